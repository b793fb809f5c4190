// Sizes the objects each sketch keeps in static RAM, as the cross compiler lays them out:
// host/cross_report.py reads these arrays' sizes with nm -S.
#include "vending_core.h"

extern "C" {
unsigned char vc_size_VendEngine[sizeof(vending::VendEngine)];
unsigned char vc_size_SerialBoard[sizeof(vending::SerialBoard)];
unsigned char vc_size_WifiBoard[sizeof(vending::WifiBoard)];
}
