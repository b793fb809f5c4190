"""The DEX/UCS audit file, read back by a reader written here, apart from the generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from shop import ledger, shop

from vending import dex

CATALOGUE_CHECK = (b"123456789", 0xBB3D)  # CRC-16/ARC in the CRC RevEng catalogue


def _reflect(value: int, width: int) -> int:
    return int(f"{value:0{width}b}"[::-1], 2)


def independent_crc16_arc(data: bytes) -> int:
    """CRC-16/ARC computed the other way round: bits reflected, MSB first, reflected back."""
    crc = 0
    for byte in data:
        crc ^= _reflect(byte, 8) << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return _reflect(crc, 16)


def read_dex(text: str) -> dict[str, Any]:
    """Check the envelope, the segment count and G85; return the records by kind."""
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text[:-2].split("\r\n")
    assert lines[0].startswith("DXS*") and lines[-1] == "DXE*1*1"
    transaction = lines[1:-1]
    assert transaction[0].startswith("ST*001*") and transaction[-1].startswith("SE*")
    st_control = transaction[0].split("*")[2]
    se = transaction[-1].split("*")
    assert int(se[1]) == len(transaction), "SE01 counts every segment from ST to SE"
    assert se[2] == st_control
    g85 = transaction[-2]
    assert g85.startswith("G85*")
    covered = "".join(line + "\r\n" for line in transaction[:-2]).encode("ascii")
    assert g85 == f"G85*{independent_crc16_arc(covered):04X}"
    records: dict[str, list[list[str]]] = {}
    for line in lines:
        parts = line.split("*")
        records.setdefault(parts[0], []).append(parts[1:])
    return records


def test_the_independent_crc_agrees_with_the_catalogue_and_with_the_generator():
    data, check = CATALOGUE_CHECK
    assert independent_crc16_arc(data) == check
    assert dex.crc16_arc(data) == check
    sample = b"ST*001*0001\r\nID1*X*Y*1***\r\n"
    assert dex.crc16_arc(sample) == independent_crc16_arc(sample)


def test_the_audit_file_adds_up_to_the_ledger_since_initialisation_and_since_reset(tmp_path: Path):
    with shop(tmp_path / "data", machine_serial="SHOP-0042", currency="USD") as (app, board):
        client = app.test_client()
        water = client.post("/products", json={"name": "Water", "default_price": 150,
                                               "sku": "WTR*50"}).get_json()["id"]
        client.patch("/slots/1", json={"product_id": water})
        client.patch("/slots/2", json={"price": 95})
        for slot in (1, 1, 2):
            assert client.post(f"/vend/{slot}?wait=5").get_json()["status"] == "success"
        board.next_result("failed", "motor_fault")
        assert client.post("/vend/2?wait=5").get_json()["status"] == "failed"
        client.post("/collections")
        client.patch("/slots/1", json={"price": 175})
        assert client.post("/vend/1?wait=5").get_json()["status"] == "success"
        board.next_result("failed", "motor_fault")
        assert client.post("/vend/1?wait=5").get_json()["status"] == "failed"

        response = client.get("/reports/dex")
        assert response.status_code == 200
        assert response.headers["Content-Disposition"].endswith(".dex")
        records = read_dex(response.get_data(as_text=True))
        sales = ledger(app)

    assert records["ID1"][0][0] == "SHOP-0042"
    assert records["ID4"] == [["2", "840", "USD"]]
    reset = [s for s in sales if s["collection_id"] is None]
    assert records["VA1"] == [[str(sum(s["price"] for s in sales)), str(len(sales)),
                               str(sum(s["price"] for s in reset)), str(len(reset))]]
    columns = {int(pa1[0]): (pa1, pa2) for pa1, pa2 in zip(records["PA1"], records["PA2"])}
    assert sorted(columns) == [1, 2, 3, 4, 5]
    for number, (_, pa2) in columns.items():
        mine = [s for s in sales if s["slot"] == number]
        mine_reset = [s for s in mine if s["collection_id"] is None]
        assert pa2 == [str(len(mine)), str(sum(s["price"] for s in mine)),
                       str(len(mine_reset)), str(sum(s["price"] for s in mine_reset))], number
    assert columns[1][0][1:] == ["175", "WTR 50"]  # the price in force; no * inside a field
    assert columns[2][0][1] == "95"
    assert records["EA2"] == [["EJB", "1", "2"], ["EJL", "0", "0"]]
    assert [event[0] for event in records["EA1"]] == ["EJB", "EJB"]
    assert all(len(event[1]) == 6 and len(event[2]) == 4 for event in records["EA1"])


@pytest.mark.parametrize("damage", ["a changed figure", "a dropped segment"])
def test_the_reader_notices_a_damaged_file(client, damage):
    client.patch("/slots/1", json={"price": 120})
    text = client.get("/reports/dex").get_data(as_text=True)
    if damage == "a changed figure":
        broken = text.replace("PA1*1*120", "PA1*1*121")
    else:
        broken = text.replace("ID4*2*978*EUR\r\n", "")
    assert broken != text
    read_dex(text)
    with pytest.raises(AssertionError):
        read_dex(broken)
