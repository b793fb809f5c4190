/* The operator's pages: plain JavaScript, no build step, nothing loaded from elsewhere. */
"use strict";
(function () {
  // A header a cross-site form cannot send: the server refuses browser writes without it.
  const CSRF_HEADER = "X-Vending-Request";

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $$(selector, root) { return Array.from((root || document).querySelectorAll(selector)); }
  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(function ([key, value]) {
      if (value === null || value === undefined || value === false) { return; }
      if (key === "text") { node.textContent = value; }
      else if (key === "className") { node.className = value; }
      else if (key === "dataset") { Object.assign(node.dataset, value); }
      else if (key.startsWith("on")) { node.addEventListener(key.slice(2), value); }
      else { node.setAttribute(key, value === true ? "" : value); }
    });
    (children || []).forEach(function (child) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  // A vend's message, with its reason only when the message does not already say it.
  function explained(txn, fallback) {
    const reason = txn.reason ? txn.reason.replace(/_/g, " ") : "";
    const message = txn.message || "";
    if (!message) { return reason || fallback; }
    const said = message.toLowerCase();
    return !reason || said.includes(reason) || said.includes(txn.reason) ? message : message + " (" + reason + ")";
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  /* One JSON request; resolves {status, body}, rejects only when the server cannot be reached. */
  async function api(method, url, body, headers) {
    const options = { method: method, headers: Object.assign({ Accept: "application/json" }, headers || {}),
                      credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") { options.headers[CSRF_HEADER] = "1"; }
    if (body !== undefined && body !== null) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(location.pathname));
    }
    let data = {};
    if ((response.headers.get("Content-Type") || "").includes("json")) {
      try { data = await response.json(); } catch (err) { data = {}; }
    }
    return { status: response.status, body: data };
  }

  /* Run `task` now and then every `ms` (or the ms it returns); nothing while the page is hidden. */
  function every(ms, task) {
    let timer = null;
    let running = false;
    let stopped = false;
    async function tick() {
      timer = null;
      if (stopped || document.hidden || running) { return; }
      running = true;
      let next = ms;
      try {
        const wanted = await task();
        if (typeof wanted === "number") { next = wanted; }
      } catch (err) {
        next = Math.max(ms, 5000);
      }
      running = false;
      if (!stopped && timer === null) { timer = setTimeout(tick, next); }
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null && !running) { tick(); }
    });
    tick();
    return {
      now: function () { if (timer !== null) { clearTimeout(timer); } timer = null; tick(); },
      stop: function () { stopped = true; if (timer !== null) { clearTimeout(timer); } timer = null; },
      start: function () { if (stopped) { stopped = false; tick(); } },
    };
  }

  function clock(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "";
  }

  /* Time only for today, date and time otherwise: short enough for a phone. */
  function when(seconds) {
    const date = new Date(seconds * 1000);
    if (date.toDateString() === new Date().toDateString()) { return date.toLocaleTimeString(); }
    return date.toLocaleDateString() + " " + date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function ago(seconds) {
    if (!seconds) { return "never"; }
    const delta = Math.max(0, Math.round(Date.now() / 1000 - seconds));
    if (delta < 5) { return "just now"; }
    if (delta < 120) { return delta + " s ago"; }
    if (delta < 7200) { return Math.round(delta / 60) + " min ago"; }
    return clock(seconds);
  }

  const STATUS_LABELS = {
    online: "Online", offline: "Offline", busy: "Busy", connecting: "Connecting",
    pending_approval: "Pending approval", port_busy: "Port busy",
  };
  const STATE_LABELS = {
    pending: "Waiting", sent: "Dispensing", success: "Dispensed", failed: "Failed",
    unknown: "Unknown",
  };

  function deviceStatus(device) {
    if (device.authenticated === false && (device.status === "online" || device.status === "busy")) {
      return { key: "legacy", label: (STATUS_LABELS[device.status] || device.status) + ", unauthenticated legacy" };
    }
    return { key: device.status, label: STATUS_LABELS[device.status] || device.status };
  }

  /* The header's mode indicator, on every page. */
  function watchMode(onChange) {
    const target = $("#mode");
    let last = "";
    return every(5000, async function () {
      let text;
      let mode;
      try {
        const { body } = await api("GET", "/esp32/communication/mode");
        mode = body.mode || "none";
        text = mode === "none" ? "No device" : "Mode: " + mode +
          (body.active_device ? " · " + body.active_device : "") +
          (body.selection === "manual" ? " (chosen)" : "");
        if (onChange) { onChange(body); }
      } catch (err) {
        mode = "unreachable";
        text = "Server unreachable";
      }
      if (target && text !== last) {
        target.textContent = text;
        target.dataset.mode = mode;
        last = text;
      }
    });
  }

  // ---- Vend page ----------------------------------------------------------------------

  function vendPage() {
    const inFlight = new Set();
    const announcer = $("#announce");

    function card(slot) { return $('.slot-card[data-slot="' + slot + '"]'); }
    function button(slot) { return $('button.slot[data-slot="' + slot + '"]'); }

    function show(slot, state, text) {
      const line = $("#slot-" + slot + "-outcome");
      if (line) { line.dataset.state = state; line.textContent = text; }
      const box = card(slot);
      if (box) { box.dataset.state = state; }
    }

    function announce(text) { if (announcer) { announcer.textContent = text; } }

    function via(txn) {
      return txn.device_id ? " via " + txn.device_id + (txn.communication ? " (" + txn.communication + ")" : "") : "";
    }

    function finalText(txn) {
      if (txn.status === "success" && txn.simulated) { return "Simulated: nothing was dispensed" + via(txn); }
      if (txn.status === "success") { return "Dispensed" + via(txn); }
      if (txn.status === "failed") { return "Failed: " + explained(txn, "not dispensed") + via(txn); }
      return "Unknown: check the machine" + via(txn) + (txn.message ? ". " + txn.message : "");
    }

    // Follow a vend until the board's outcome; while the server is unreachable keep trying.
    async function follow(txn, slot) {
      const deadline = Date.now() + 120000;
      while (txn.status === "pending" || txn.status === "sent") {
        show(slot, txn.status === "sent" ? "dispensing" : "sending",
             txn.status === "sent" ? "Dispensing…" + via(txn) : "Sending…");
        if (Date.now() > deadline) { break; }
        await sleep(250);
        try {
          const answer = await api("GET", "/vend/" + encodeURIComponent(txn.transaction_id));
          if (answer.status === 200) { txn = answer.body; }
        } catch (err) { await sleep(1000); }
      }
      if (txn.status === "pending" || txn.status === "sent") {
        txn = Object.assign({}, txn, { status: "unknown", message: "lost contact with the server; see Transactions" });
      }
      const stateKey = txn.status === "success" ? "dispensed" : txn.status;
      show(slot, stateKey, finalText(txn));
      announce("Slot " + slot + ": " + finalText(txn));
    }

    async function vend(slot) {
      const target = button(slot);
      if (!target || target.disabled || inFlight.has(slot)) { return; }
      inFlight.add(slot);
      target.disabled = true;
      target.setAttribute("aria-busy", "true");
      show(slot, "sending", "Sending…");
      announce("Slot " + slot + ": sending");
      // One key per press: a retry after a lost answer repeats the key, so it cannot vend twice.
      const key = newKey();
      let answer = null;
      for (let attempt = 0; attempt < 4 && answer === null; attempt += 1) {
        try {
          answer = await api("POST", "/vend/" + slot + "?wait=0", null, { "Idempotency-Key": key });
        } catch (err) {
          show(slot, "sending", "Sending… (server not answering, retrying)");
          await sleep(700 * (attempt + 1));
        }
      }
      try {
        if (answer === null) {
          show(slot, "unknown", "Unknown: the server did not answer. Check the machine and Transactions.");
          announce("Slot " + slot + ": unknown, check the machine");
        } else if (answer.body && answer.body.transaction_id) {
          // A retry whose first try is still running answers 409 with the id: follow that one.
          await follow(answer.body.status ? answer.body
            : { transaction_id: answer.body.transaction_id, status: "pending", slot: slot }, slot);
        } else {
          const text = "Not dispensed: " + (answer.body.detail || "the server refused (" + answer.status + ")");
          show(slot, "refused", text);
          announce("Slot " + slot + ": " + text);
        }
      } finally {
        inFlight.delete(slot);
        target.removeAttribute("aria-busy");
        target.disabled = card(slot).classList.contains("sold-out");
        slots.now();
      }
    }

    $$("button.slot").forEach(function (target) {
      target.addEventListener("click", function () { vend(Number(target.dataset.slot)); });
    });
    document.addEventListener("keydown", function (event) {
      if (event.repeat || event.ctrlKey || event.altKey || event.metaKey) { return; }
      if (event.target.closest && event.target.closest("input, select, textarea")) { return; }
      if (/^[1-9]$/.test(event.key)) { vend(Number(event.key)); }
    });

    const slots = every(10000, async function () {
      const { body } = await api("GET", "/slots");
      (body.slots || []).forEach(function (slot) {
        const box = card(slot.number);
        if (!box) { return; }
        box.classList.toggle("sold-out", slot.sold_out);
        $(".name", box).textContent = slot.name;
        $(".product", box).textContent = slot.product_name && slot.product_name !== slot.name ? slot.product_name : "";
        $(".price", box).textContent = slot.price_text || "";
        $(".stock", box).textContent = slot.sold_out ? "Sold out" : (slot.stock === null ? "\u00a0" : slot.stock + " left");
        if (!inFlight.has(slot.number)) { button(slot.number).disabled = slot.sold_out; }
      });
    });
    watchMode();
  }

  // ---- Devices page -------------------------------------------------------------------

  function devicesPage() {
    const rows = $("#device-rows");
    const message = $("#device-message");
    let signature = "";

    function say(text) { message.textContent = text; }

    async function act(label, url, body) {
      const answer = await api("POST", url, body || {});
      say(answer.status === 200 ? label + ": done." : label + ": " + (answer.body.detail || "refused (" + answer.status + ")"));
      list.now();
      mode.now();
    }

    function actions(device, active) {
      const id = device.device_id;
      const path = "/esp32/devices/" + encodeURIComponent(id);
      const cell = el("div", { className: "actions" });
      if (id === active) {
        cell.append(el("span", { className: "badge active", text: "Active" }));
      } else if (device.status === "online" || device.status === "busy") {
        cell.append(el("button", { type: "button", text: "Use this one", "aria-label": "Use " + id,
          onclick: function () { act("Select " + id, "/esp32/devices/select", { device_id: id }); } }));
      }
      if (device.approved === false) {
        // Approving names the fingerprint shown here, so a key swapped in meanwhile is refused.
        const keys = device.conflict ? [device.fingerprint, device.conflict.fingerprint] : [device.fingerprint];
        keys.forEach(function (fingerprint) {
          if (device.conflict && !fingerprint) { return; }
          const label = device.conflict ? "Approve key " + fingerprint : "Approve";
          cell.append(el("button", { type: "button", text: label,
            "aria-label": device.conflict ? label + " for " + id : "Approve " + id + (fingerprint ? " with key " + fingerprint : ""),
            onclick: function () { act("Approve " + id, path + "/approve", fingerprint ? { fingerprint: fingerprint } : {}); } }));
        });
        cell.append(el("button", { type: "button", className: "danger", text: device.conflict ? "Reject both" : "Reject",
          "aria-label": (device.conflict ? "Reject both boards claiming " : "Reject ") + id,
          onclick: function () { act("Reject " + id, path + "/reject"); } }));
      } else if (device.approved === true) {
        cell.append(el("button", { type: "button", className: "danger", text: "Revoke", "aria-label": "Revoke " + id,
          onclick: function () { act("Revoke " + id, path + "/revoke"); } }));
      }
      return el("td", { "data-label": "Actions" }, [cell]);
    }

    /* Two boards claim one id: say so plainly, with both keys, so the operator can choose. */
    function conflictNote(conflict) {
      const other = conflict.fingerprint ? "key " + conflict.fingerprint : "protocol " + conflict.protocol + " (no key)";
      return el("span", { className: "conflict", role: "alert",
        text: "Conflict: another board claims this id (" + other + (conflict.source ? ", from " + conflict.source : "") +
          "). Approve only the key the board's own console shows." });
    }

    function render(data) {
      const devices = data.devices || [];
      const shape = JSON.stringify([data.active_device, data.selection, devices.map(function (d) {
        return [d.device_id, d.type, d.status, d.status_detail, d.firmware_version, d.protocol, d.approved,
          d.authenticated, d.selected, d.fingerprint, d.conflict];
      })]);
      if (shape === signature) {
        $$("[data-last-seen]", rows).forEach(function (cell) { cell.textContent = ago(Number(cell.dataset.lastSeen)); });
        return;
      }
      signature = shape;
      rows.replaceChildren();
      if (!devices.length) {
        rows.append(el("tr", {}, [el("td", { colspan: 7, text: "No boards yet. Plug one in by USB or power a WiFi board." })]));
        return;
      }
      devices.forEach(function (device) {
        const status = deviceStatus(device);
        rows.append(el("tr", { dataset: { device: device.device_id, status: status.key } }, [
          // The key fingerprint lets the operator compare it with the board's console before approving.
          el("th", { scope: "row", "data-label": "Device" }, [el("span", { className: "device-name" },
            [el("span", { className: "device-id", text: device.device_id })].concat(device.fingerprint ?
              [el("span", { className: "fingerprint", text: "key " + device.fingerprint })] : []).concat(
              device.conflict ? [conflictNote(device.conflict)] : []))]),
          el("td", { text: device.transport || device.type, "data-label": "Transport" }),
          el("td", { "data-label": "State" }, [el("span", { className: "badge status-" + status.key,
            text: status.label, title: device.status_detail || null })]),
          el("td", { text: ago(device.last_seen), "data-label": "Last seen",
                     dataset: { lastSeen: device.last_seen || 0 } }),
          el("td", { text: device.firmware_version || "–", "data-label": "Firmware" }),
          el("td", { text: device.protocol ? "v" + device.protocol : "–", "data-label": "Protocol" }),
          actions(device, data.active_device),
        ]));
      });
    }

    const list = every(3000, async function () {
      const { body } = await api("GET", "/esp32/devices/list");
      render(body);
    });

    $("#auto-select").addEventListener("click", function () {
      act("Automatic choice", "/esp32/devices/auto-select");
    });
    const mode = watchMode(function (mode) {
      $("#mode-detail").textContent = mode.mode === "none" ? "No board can vend right now." :
        "Vends go to " + (mode.active_device || "–") + " over " + mode.mode + ", " +
        (mode.selection === "manual" ? "chosen by an operator." : "chosen automatically.");
    });
  }

  // ---- Communication log --------------------------------------------------------------

  function logPage() {
    const list = $("#log");
    const maxRows = Number(list.dataset.maxRows) || 500;
    const deviceFilter = $("#log-device");
    const directionFilter = $("#log-direction");
    const pauseButton = $("#log-pause");
    const jump = $("#log-jump");
    const status = $("#log-status");
    const knownDevices = new Set();
    let lastId = 0;
    let paused = false;
    let quietPolls = 0;

    function atBottom() { return list.scrollHeight - list.scrollTop - list.clientHeight < 24; }
    function scrollDown() { list.scrollTop = list.scrollHeight; jump.hidden = true; }

    function visible(row) {
      return (!deviceFilter.value || row.dataset.device === deviceFilter.value) &&
        (!directionFilter.value || row.dataset.direction === directionFilter.value);
    }

    function applyFilter() {
      $$("li", list).forEach(function (row) { row.hidden = !visible(row); });
      scrollDown();
    }

    function add(entry) {
      if (!knownDevices.has(entry.device_id)) {
        knownDevices.add(entry.device_id);
        deviceFilter.append(el("option", { value: entry.device_id, text: entry.device_id }));
      }
      const row = el("li", { className: "dir-" + entry.direction,
                             dataset: { id: entry.id, device: entry.device_id, direction: entry.direction } }, [
        el("time", { datetime: new Date(entry.time * 1000).toISOString(), text: clock(entry.time) }),
        el("span", { className: "device", text: entry.device_id }),
        el("span", { className: "direction", text: entry.direction }),
        el("span", { className: "message", text: entry.message }),
      ]);
      row.hidden = !visible(row);
      list.append(row);
    }

    const poller = every(1000, async function () {
      const { body } = await api("GET", "/esp32/communication/log?since=" + lastId + "&limit=200");
      const entries = body.entries || [];
      if (body.truncated && lastId > 0) {
        list.append(el("li", { className: "dir-info gap", text: "… older lines were dropped" }));
      }
      if (!entries.length) {
        quietPolls += 1;
        // Back off while nothing happens, so an idle page costs little.
        return Math.min(1000 + quietPolls * 500, 3000);
      }
      quietPolls = 0;
      const stick = atBottom();
      entries.forEach(add);
      lastId = entries[entries.length - 1].id;
      while (list.children.length > maxRows) { list.firstElementChild.remove(); }
      if (stick) { scrollDown(); } else { jump.hidden = false; }
      // More may be waiting when a full page came back.
      return entries.length >= 200 ? 50 : 1000;
    });

    list.addEventListener("scroll", function () { if (atBottom()) { jump.hidden = true; } });
    jump.addEventListener("click", scrollDown);
    deviceFilter.addEventListener("change", applyFilter);
    directionFilter.addEventListener("change", applyFilter);
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.setAttribute("aria-pressed", String(paused));
      pauseButton.textContent = paused ? "Resume" : "Pause";
      status.textContent = paused ? "Paused: new lines are not shown." : "Live.";
      if (paused) { poller.stop(); } else { poller.start(); }
    });
    $("#log-clear").addEventListener("click", async function () {
      const answer = await api("POST", "/esp32/communication/log/clear");
      if (answer.status === 200) {
        list.replaceChildren();
        lastId = Math.max(lastId, answer.body.last_id || 0);
        status.textContent = "Log cleared.";
      }
    });
    watchMode();
  }

  // ---- Transactions -------------------------------------------------------------------

  function historyPage() {
    const rows = $("#txn-rows");
    const summary = $("#txn-summary");
    const stateFilter = $("#txn-state");
    const slotFilter = $("#txn-slot");
    const csv = $("#txn-csv");
    let signature = "";

    function query() {
      const params = new URLSearchParams();
      if (stateFilter.value) { params.set("state", stateFilter.value); }
      if (slotFilter.value) { params.set("slot", slotFilter.value); }
      return params;
    }

    function checkCell(txn) {
      if (txn.checked_at) {
        return el("td", { "data-label": "Check",
                          text: "Checked " + when(txn.checked_at) + (txn.check_note ? ": " + txn.check_note : "") });
      }
      if (txn.status !== "unknown") { return el("td", { text: "" }); }
      const note = el("input", { name: "note", maxlength: 500, placeholder: "What did you find?",
                                 "aria-label": "Note for vend " + txn.transaction_id });
      const form = el("form", { className: "check" }, [note,
        el("button", { type: "submit", text: "Mark checked" })]);
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const answer = await api("POST", "/transactions/" + encodeURIComponent(txn.transaction_id) + "/check",
                                 { note: note.value });
        summary.textContent = answer.status === 200 ? "Marked as checked." : (answer.body.detail || "Could not mark it.");
        signature = "";
        refresh.now();
      });
      return el("td", { "data-label": "Check" }, [form]);
    }

    const refresh = every(10000, async function () {
      // Do not rebuild the table under someone typing a note.
      if (rows.contains(document.activeElement) && document.activeElement.tagName === "INPUT") { return; }
      const params = query();
      params.set("limit", "50");
      const { body } = await api("GET", "/transactions?" + params);
      const list = body.transactions || [];
      const shape = JSON.stringify(list.map(function (t) { return [t.transaction_id, t.status, t.checked_at]; }));
      if (shape === signature) { return; }
      signature = shape;
      rows.replaceChildren();
      const unknown = list.filter(function (t) { return t.status === "unknown" && !t.checked_at; }).length;
      summary.textContent = body.total + " vend" + (body.total === 1 ? "" : "s") +
        (unknown ? ", " + unknown + " unknown to check" : "") + (body.total > list.length ? " (newest 50 shown)" : "");
      if (!list.length) {
        rows.append(el("tr", {}, [el("td", { colspan: 6, text: "No vends yet." })]));
      }
      list.forEach(function (txn) {
        const attention = txn.status === "unknown" && !txn.checked_at;
        rows.append(el("tr", { className: "state-" + txn.status + (attention ? " attention" : ""),
                               dataset: { id: txn.transaction_id, state: txn.status } }, [
          el("td", { "data-label": "Time" }, [el("time", { datetime: new Date(txn.created_at * 1000).toISOString(),
                                                           text: when(txn.created_at) })]),
          el("td", { text: txn.slot, "data-label": "Slot" }),
          el("td", { "data-label": "State" }, [el("span", { className: "badge state-" + txn.status,
                                                            text: (STATE_LABELS[txn.status] || txn.status) +
                                                                  (txn.simulated ? " (simulated: nothing was dispensed)" : "") })]),
          el("td", { text: (txn.device_id || "–") + (txn.communication ? " (" + txn.communication + ")" : ""),
                     "data-label": "Device" }),
          el("td", { "data-label": "Message" }, [el("span", { className: "message",
            text: explained(txn, "") })]),
          checkCell(txn),
        ]));
      });
    });

    function filtersChanged() {
      const params = query();
      params.set("format", "csv");
      csv.href = "/transactions?" + params;
      signature = "";
      refresh.now();
    }
    stateFilter.addEventListener("change", filtersChanged);
    slotFilter.addEventListener("change", filtersChanged);
    $("#txn-filter").addEventListener("submit", function (event) { event.preventDefault(); });
    watchMode();
  }

  // ---- Slots admin --------------------------------------------------------------------

  function stockPage() {
    const message = $("#stock-message");

    function done(answer, what) {
      message.textContent = answer.status === 200 ? what : "Not saved: " + (answer.body.detail || answer.status);
      return answer.status === 200;
    }

    // "1.50" -> 150 minor units, by text, never through a float; null when empty, NaN when bad.
    function minorUnits(text, decimals) {
      const value = text.trim().replace(",", ".");
      if (value === "") { return null; }
      const match = /^([0-9]+)(?:\.([0-9]+))?$/.exec(value);
      if (!match || (match[2] || "").length > decimals) { return NaN; }
      return Number(match[1]) * Math.pow(10, decimals) + Number((match[2] || "").padEnd(decimals, "0") || 0);
    }
    function countOrNull(input) { const text = input.value.trim(); return text === "" ? null : Number(text); }

    $$("form.slot-edit").forEach(function (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const slot = form.dataset.slot;
        const fields = form.elements;
        const body = { name: fields.name.value, stock: countOrNull(fields.stock),
                       capacity: countOrNull(fields.capacity), par: countOrNull(fields.par) };
        const selected = fields.product_id.querySelector("option[selected]");
        if (fields.product_id.value !== (selected ? selected.value : "")) {
          body.product_id = fields.product_id.value === "" ? null : Number(fields.product_id.value);
        }
        // Only a price typed here becomes the slot's own; otherwise the product's default holds.
        if (fields.price.value !== fields.price.defaultValue) {
          body.price = minorUnits(fields.price.value, Number(form.dataset.decimals));
          if (Number.isNaN(body.price)) { message.textContent = "Not saved: the price is not an amount."; return; }
        }
        const answer = await api("PATCH", "/slots/" + slot, body);
        if (done(answer, "Slot " + slot + " saved.")) {
          fields.price.value = fields.price.defaultValue = answer.body.price === null ? "" :
            answer.body.price_text.split(" ")[0];
          $$("option", fields.product_id).forEach(function (option) {
            option.toggleAttribute("selected", option.value === String(answer.body.product_id || ""));
          });
        }
      });
    });
    $("#product-add").addEventListener("submit", async function (event) {
      event.preventDefault();
      const form = event.target;
      const price = minorUnits(form.elements.default_price.value, Number(form.dataset.decimals));
      if (price === null || Number.isNaN(price)) { message.textContent = "Not added: the price is not an amount."; return; }
      const body = { name: form.elements.name.value, default_price: price };
      if (form.elements.sku.value.trim()) { body.sku = form.elements.sku.value; }
      const answer = await api("POST", "/products", body);
      if (answer.status === 201) {
        window.location.reload();
      } else {
        message.textContent = "Not added: " + (answer.body.detail || answer.status);
      }
    });
    $$("form.slot-restock").forEach(function (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const slot = form.dataset.slot;
        const answer = await api("POST", "/slots/" + slot + "/restock",
                                 { quantity: Number(form.elements.quantity.value) });
        if (done(answer, "Slot " + slot + " now has " + answer.body.stock + ".")) {
          $('form.slot-edit[data-slot="' + slot + '"]').elements.stock.value = answer.body.stock;
        }
      });
    });
    watchMode();
  }

  // ---- Reports page -------------------------------------------------------------------

  function reportsPage() {
    const message = $("#reports-message");

    $("#print-pick-list").addEventListener("click", function () { window.print(); });
    $("#collect-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      const answer = await api("POST", "/collections", { note: event.target.elements.note.value });
      if (answer.status === 201) {
        window.location.reload();
      } else {
        message.textContent = "Not recorded: " + (answer.body.detail || answer.status);
      }
    });
    $("#refill-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      const slots = $$("input[name=slot]:checked", event.target).map(function (box) { return Number(box.value); });
      if (!slots.length) { message.textContent = "Choose at least one slot to refill."; return; }
      const answer = await api("POST", "/slots/refill", { slots: slots });
      if (answer.status !== 200) {
        message.textContent = "Nothing refilled: " + (answer.body.detail || answer.status);
        return;
      }
      answer.body.slots.forEach(function (slot) {
        const cell = $('.refill-stock[data-slot="' + slot.number + '"]');
        if (cell) { cell.textContent = slot.stock; }
      });
      message.textContent = "Refilled slot" + (slots.length > 1 ? "s " : " ") + slots.join(", ") + ".";
    });
    watchMode();
  }

  const PAGES = { vend: vendPage, devices: devicesPage, log: logPage, history: historyPage, stock: stockPage,
                  reports: reportsPage };
  const start = PAGES[document.body.dataset.page];
  if (start) { start(); }
})();
