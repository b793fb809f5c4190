"use strict";
(function () {
  const outcome = document.getElementById("outcome");
  const mode = document.getElementById("mode");
  const log = document.getElementById("log");
  let lastLogId = 0;

  function newKey() {
    return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
  }

  async function vend(slot, button) {
    button.disabled = true;
    outcome.textContent = "Slot " + slot + ": sending…";
    try {
      const response = await fetch("/vend/" + slot, {
        method: "POST", headers: { "Idempotency-Key": newKey() },
      });
      const body = await response.json();
      const how = body.device_id ? " (" + body.device_id + ", " + body.communication + ")" : "";
      outcome.textContent = "Slot " + slot + ": " + (body.status || body.error) + " – " +
        (body.message || body.detail || "") + how;
    } catch (err) {
      outcome.textContent = "Slot " + slot + ": could not reach the server";
    } finally {
      button.disabled = false;
    }
  }

  document.querySelectorAll("button.slot").forEach(function (button) {
    button.addEventListener("click", function () { vend(button.dataset.slot, button); });
  });
  document.addEventListener("keydown", function (event) {
    const button = document.querySelector('button.slot[data-slot="' + event.key + '"]');
    if (button && !button.disabled) { vend(event.key, button); }
  });

  async function poll() {
    try {
      const status = await (await fetch("/esp32/communication/mode")).json();
      mode.textContent = "Mode: " + status.mode + (status.active_device ? " (" + status.active_device + ")" : "");
      const data = await (await fetch("/esp32/communication/log?since=" + lastLogId)).json();
      data.entries.forEach(function (entry) {
        const item = document.createElement("li");
        item.textContent = entry.device_id + " " + entry.direction + " " + entry.message;
        log.appendChild(item);
        lastLogId = entry.id;
      });
      while (log.children.length > 200) { log.removeChild(log.firstChild); }
    } catch (err) { mode.textContent = "Server unreachable"; }
  }
  poll();
  setInterval(poll, 2000);
})();
