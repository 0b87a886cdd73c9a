// The portal's dashboard: draws the figures rendered with the page, then fetches them again
// every REFRESH_MS from /admin/api/dashboard and updates the charts and tables in place.
(function () {
  "use strict";
  var REFRESH_MS = 10000;
  var COLORS = { sent: "#2fb344", failed: "#d63939", skipped: "#9ba9be" };
  var hourly = null;
  var deadLetters = null;

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) { node.textContent = value; }
  }

  function sum(values) {
    return values.reduce(function (a, b) { return a + b; }, 0);
  }

  function hourLabel(iso) {
    return iso.slice(11, 16);
  }

  function drawHourly(data) {
    var labels = data.hourly.hours.map(hourLabel);
    var datasets = ["sent", "failed", "skipped"].map(function (name) {
      return { label: name, data: data.hourly[name], backgroundColor: COLORS[name] };
    });
    if (hourly === null) {
      hourly = new Chart(document.getElementById("chart-hourly"), {
        type: "bar",
        data: { labels: labels, datasets: datasets },
        options: {
          animation: false,
          scales: { x: { stacked: true, title: { display: true, text: "hour (UTC)" } },
                    y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
        }
      });
    } else {
      hourly.data.labels = labels;
      datasets.forEach(function (set, i) { hourly.data.datasets[i].data = set.data; });
      hourly.update();
    }
  }

  function drawDeadLetters(data) {
    var labels = data.dead_letters.map(function (d) { return d.reason; });
    var counts = data.dead_letters.map(function (d) { return d.count; });
    if (deadLetters === null) {
      deadLetters = new Chart(document.getElementById("chart-dead-letters"), {
        type: "bar",
        data: { labels: labels, datasets: [{ label: "dead letters", data: counts,
                                              backgroundColor: "#f76707" }] },
        options: { animation: false, indexAxis: "y", plugins: { legend: { display: false } },
                   scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
      });
    } else {
      deadLetters.data.labels = labels;
      deadLetters.data.datasets[0].data = counts;
      deadLetters.update();
    }
  }

  var CIRCUIT_BADGES = {"closed": "bg-green-lt", "half-open": "bg-yellow-lt", "open": "bg-red-lt"};

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (value) {
      var td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    });
    return tr;
  }

  function fillTables(data) {
    text("dash-generated", data.generated_at.slice(0, 19).replace("T", " "));
    ["sent", "failed", "skipped"].forEach(function (name) {
      text("total-" + name, String(sum(data.hourly[name])));
    });
    var circuits = document.querySelector("#dash-circuits tbody");
    if (circuits && data.circuits.ok) {
      circuits.replaceChildren.apply(circuits, data.circuits.value.dependencies.map(function (c) {
        var tr = row([c.name, "", String(c.parked)]);
        var badge = document.createElement("span");
        badge.className = "badge " + CIRCUIT_BADGES[c.state];
        badge.dataset.state = c.state;
        badge.textContent = c.state;
        tr.children[1].appendChild(badge);
        return tr;
      }));
    }
    text("dash-provider", data.circuits.ok ? data.circuits.value.provider : "unknown");
    text("dash-queue-emails", data.queues.ok ? String(data.queues.value.emails) : "unknown");
    text("dash-queue-jobs", data.queues.ok ? String(data.queues.value.jobs) : "unknown");
    var sending = data.sending;
    text("dash-rate", sending.rate);
    text("dash-waiting", String(sending.waiting));
    text("dash-slots-until",
         sending.slots_until ? sending.slots_until.slice(0, 19).replace("T", " ") + " UTC" : "-");
    text("dash-drain", sending.drain);
    var lag = document.querySelector("#dash-lag tbody");
    if (lag && data.lag.ok) {
      lag.replaceChildren.apply(lag, data.lag.partitions.map(function (p) {
        return row([p.topic, String(p.partition), p.applied === null ? "-" : String(p.applied),
                    String(p.end), String(p.lag) + (p.blocked ? " (blocked)" : "")]);
      }));
    }
    var planning = document.querySelector("#dash-planning tbody");
    if (planning && data.planning.length) {
      planning.replaceChildren.apply(planning, data.planning.map(function (r) {
        return row([r.periodicity, r.started.slice(0, 16).replace("T", " "),
                    r.shards_done + " of " + r.shards + (r.shards_failed ? " (" + r.shards_failed + " failed)" : ""),
                    r.picked + " of about " + r.expected, String(r.scheduled), String(r.skipped),
                    String(r.failed)]);
      }));
    }
    var dead = document.getElementById("dash-dead-letters");
    if (dead) {
      dead.replaceChildren.apply(dead, data.dead_letters.map(function (d) {
        var li = document.createElement("li");
        li.textContent = d.reason + ": " + d.count;
        return li;
      }));
    }
  }

  function draw(data) {
    if (typeof Chart !== "undefined") {
      drawHourly(data);
      drawDeadLetters(data);
    }
    fillTables(data);
  }

  function refresh() {
    fetch("/admin/api/dashboard", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { draw(data); } })
      .catch(function () { /* the next refresh tries again */ });
  }

  draw(JSON.parse(document.getElementById("dashboard-data").textContent));
  window.setInterval(refresh, REFRESH_MS);
})();
