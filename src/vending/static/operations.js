"use strict";
// Alerts banner (until acknowledged) and the latest operator actions; polls the API.
(function () {
  const banner = document.getElementById("alerts");
  const audit = document.getElementById("audit");
  if (!banner) { return; }

  function when(seconds) {
    return new Date(seconds * 1000).toLocaleString();
  }

  async function acknowledge(id, button) {
    button.disabled = true;
    try {
      await fetch("/alerts/" + id + "/ack", {
        method: "POST", headers: { "X-Vending-Request": "1" },
      });
    } finally {
      refreshAlerts();
      refreshAudit();
    }
  }

  function renderAlerts(alerts) {
    banner.replaceChildren();
    banner.hidden = alerts.length === 0;
    alerts.forEach(function (alert) {
      const item = document.createElement("div");
      item.className = "alert alert-" + alert.severity;
      item.setAttribute("role", "alert");
      const text = document.createElement("span");
      text.textContent = when(alert.time) + " – " + alert.message;
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Acknowledge";
      button.addEventListener("click", function () { acknowledge(alert.id, button); });
      item.append(text, button);
      banner.appendChild(item);
    });
    // Room to scroll the end of the page above the banner; padding at the bottom moves nothing.
    document.body.style.paddingBottom = banner.hidden ? "" : banner.offsetHeight + 16 + "px";
  }

  async function refreshAlerts() {
    try {
      const data = await (await fetch("/alerts?active=1&limit=50")).json();
      renderAlerts(data.alerts.slice().reverse());
    } catch (err) { /* the main poll already says the server is unreachable */ }
  }

  async function refreshAudit() {
    if (!audit) { return; }
    try {
      const data = await (await fetch("/audit?limit=10")).json();
      audit.replaceChildren();
      data.entries.forEach(function (entry) {
        const row = document.createElement("tr");
        [when(entry.time), entry.who + " (" + entry.source + ")", entry.action, entry.outcome,
          entry.detail].forEach(function (value) {
          const cell = document.createElement("td");
          cell.textContent = value;
          row.appendChild(cell);
        });
        audit.appendChild(row);
      });
    } catch (err) { /* shown again on the next poll */ }
  }

  // Alerts are slow news next to a vend's own outcome: every 10 s is enough, and a hidden
  // tab (a phone in a pocket) asks for nothing until it is shown again.
  function whenVisible(refresh) {
    return function () { if (!document.hidden) { refresh(); } };
  }
  refreshAlerts();
  refreshAudit();
  setInterval(whenVisible(refreshAlerts), 10000);
  setInterval(whenVisible(refreshAudit), 10000);
  document.addEventListener("visibilitychange", whenVisible(refreshAlerts));
})();
