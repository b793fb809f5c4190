// Copy this file to secrets.h (same folder) and fill it in. secrets.h is ignored by git:
// never commit real credentials.
#ifndef VENDING_SECRETS_H
#define VENDING_SECRETS_H

#define WIFI_SSID "your-shop-wifi"
#define WIFI_PASSWORD "your-wifi-password"

// The one-time code the server shows when you pair a new board (web page, Devices).
// After pairing, the board keeps its own secret in flash (NVS) and ignores this value.
#define PAIRING_CODE "000000"

#endif
