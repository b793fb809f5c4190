"""Money: integers in minor units of one configured ISO 4217 currency, never floats."""

from __future__ import annotations

from dataclasses import dataclass

# ISO 4217 numeric codes of common currencies (the DEX ID4 record carries the numeric code)
# and their usual decimal places. A currency not listed still works; its numeric code is
# then unknown ("000" in DEX).
ISO_4217: dict[str, tuple[int, int]] = {
    "AUD": (36, 2), "BGN": (975, 2), "BRL": (986, 2), "CAD": (124, 2), "CHF": (756, 2),
    "CLP": (152, 0), "CNY": (156, 2), "CZK": (203, 2), "DKK": (208, 2), "EUR": (978, 2),
    "GBP": (826, 2), "HKD": (344, 2), "HUF": (348, 2), "IDR": (360, 2), "ILS": (376, 2),
    "INR": (356, 2), "ISK": (352, 0), "JPY": (392, 0), "KRW": (410, 0), "KWD": (414, 3),
    "MXN": (484, 2), "MYR": (458, 2), "NOK": (578, 2), "NZD": (554, 2), "PHP": (608, 2),
    "PLN": (985, 2), "RON": (946, 2), "SEK": (752, 2), "SGD": (702, 2), "THB": (764, 2),
    "TRY": (949, 2), "TWD": (901, 2), "UAH": (980, 2), "USD": (840, 2), "ZAR": (710, 2),
}

MAX_PRICE = 10**7  # minor units: 100,000.00 in a two-decimal currency is plenty for a slot


@dataclass(frozen=True)
class Currency:
    """The machine's one currency: its ISO 4217 code and decimal places."""

    code: str = "EUR"
    decimals: int = 2

    @property
    def numeric(self) -> str:
        """The ISO 4217 numeric code as three digits, "000" when not known here."""
        known = ISO_4217.get(self.code)
        return f"{known[0]:03d}" if known else "000"

    def format(self, minor: int | None) -> str:
        """1234 -> "12.34 EUR"; None -> ""."""
        if minor is None:
            return ""
        return f"{self.amount(minor)} {self.code}"

    def amount(self, minor: int) -> str:
        """1234 -> "12.34": exact decimal text, no currency code."""
        sign = "-" if minor < 0 else ""
        whole, fraction = divmod(abs(minor), 10**self.decimals)
        if not self.decimals:
            return f"{sign}{whole}"
        return f"{sign}{whole}.{fraction:0{self.decimals}d}"

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "decimals": self.decimals, "numeric": self.numeric}
