"""flask-vending-machine: the controller that runs an ESP32 vending machine."""
