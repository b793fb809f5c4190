// Copy this file to secrets.h (same folder) and fill it in. secrets.h is ignored by git:
// never commit real credentials.
#ifndef VENDING_SECRETS_H
#define VENDING_SECRETS_H

#define WIFI_SSID "your-shop-wifi"
#define WIFI_PASSWORD "your-wifi-password"

// Nothing else: the board pairs by itself (X25519) once an operator approves it on the
// server's Devices page, and keeps the resulting secret in flash (NVS), not in any file.

#endif
