// Pins and timings of one vending board. Edit to match your wiring (see esp_code/README.md).
#ifndef VENDING_CONFIG_H
#define VENDING_CONFIG_H

#define FIRMWARE_VERSION "2.0.0"

// One motor driver input per slot, slot 1 first. The number of pins is the number of slots.
#define MOTOR_PINS {16, 17, 18, 19, 21}
// 1: a HIGH pin turns the motor on (most MOSFET/relay modules); 0: active LOW relays.
#ifndef MOTOR_ACTIVE_HIGH  // (the host boot test sets it with -D)
#define MOTOR_ACTIVE_HIGH 1
#endif

// How long each slot's motor turns for one item without a sensor, in ms (slot 1 first).
#define SLOT_RUN_MS {1200, 1200, 1200, 1200, 1200}
// Hard cut: no motor ever turns longer than this, whatever else says (DONE ... motor_fault).
#define MAX_RUN_MS 15000

// Optional dispense sensor (IR beam across the chute). -1: none, then success means
// "the motor turned for its run time"; with a sensor it means "an item fell".
#define SENSOR_PIN -1
// Level the sensor pin shows while the beam is broken (most IR break-beam modules: LOW).
#define SENSOR_BROKEN_LEVEL LOW
// With a sensor: no item within this time -> DONE ... reason=jam (motor stopped).
#define JAM_MS 4000

#define STATUS_LED_PIN 2      // -1 when the board has no LED
// The chip restarts if loop() stalls this long. A network call blocks loop() (never while a
// motor turns) for at most LONG_POLL_SECONDS + 8 s; the sketch refuses to build unless this
// is at least 5 s more than that.
#define WATCHDOG_SECONDS 40

#define DISCOVERY_PORT 12346        // UDP port the server answers VENDING_DISCOVER_V2 on
#define DISCOVERY_REPLY_PORT 12347  // local UDP port the board listens on for the reply
// How long one "any command for me?" request may wait (the server holds it at most 25 s).
// The board gives up on it 3 s (connect) + this + 5 s after it starts.
#define LONG_POLL_SECONDS 20

#endif
