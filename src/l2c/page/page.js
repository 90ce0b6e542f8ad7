"use strict";
// The prediction page's behaviour. Every value from the configuration (a model card: text from
// a training CSV) reaches the document through textContent or attributes, never as markup.
(function () {
  const config = JSON.parse(document.getElementById("l2c-config").textContent);
  const card = config.card;
  const names = card.feature_names;
  const labels = card.class_labels || [];
  const ranges = card.feature_ranges || {};
  const target = card.target || {};
  const TIMEOUT_MS = 30000;
  // Reason phrases for when the browser gives none: HTTP/2, which API Gateway speaks to browsers, carries
  // no reason phrase (RFC 9113, section 8.3.2).
  const REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
  };
  // What a person can do about an error status, beside the API's own message.
  const HINTS = {
    403: "API Gateway refused the request: a missing or wrong API key, or a URL with no such route.",
    429: "Too many requests: the usage plan's rate or daily quota is used up; wait and try again.",
    502: "The model answered with something the API could not use.",
    503: "The model's endpoint is not ready (or is restarting); try again in a moment.",
    504: "The model took too long to answer.",
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const short = (value) => (Number.isFinite(value) ? String(Number(value.toPrecision(4))) : "?");

  function describeModel() {
    const task = card.task === "classification" ? "classifier" : "regressor";
    $("subtitle").textContent = `${card.name || config.stack}: XGBoost ${task} · POST ${config.invoke_url}`;
    const parts = [];
    const scores = (card.metrics || {}).cross_validation || {};
    for (const [metric, value] of Object.entries(scores)) {
      if (value && Number.isFinite(value.mean)) parts.push(`${metric} ${value.mean.toFixed(3)}`);
    }
    const trained = card.created_at ? `trained ${card.created_at.slice(0, 10)}` : "";
    $("footer").textContent = [
      `Model card of ${card.name || config.stack}`, trained,
      parts.length ? `cross-validated ${parts.join(", ")}` : "",
      card.xgboost_version ? `XGBoost ${card.xgboost_version}` : "",
      "made by l2c",
    ].filter(Boolean).join(" · ");
  }

  function buildInputs() {
    const box = $("features");
    names.forEach((name, index) => {
      const field = el("div", "feature");
      const label = el("label");
      label.htmlFor = `feature-${index}`;
      label.append(el("span", "name", name));
      const range = ranges[name];
      const hint = Array.isArray(range) ? `${short(range[0])} – ${short(range[1])}` : "";
      if (hint) label.append(el("span", "range", hint));
      const input = el("input");
      input.id = `feature-${index}`;
      input.name = name;
      input.inputMode = "decimal";
      input.autocomplete = "off";
      input.spellcheck = false;
      if (hint) {
        input.placeholder = hint;
        input.title = `${name}: the training data ranged from ${hint}`;
      }
      field.append(label, input);
      box.append(field);
    });
    $("csv").placeholder = (card.sample_rows && card.sample_rows[0])
      ? card.sample_rows[0].map(short).join(",")
      : names.map(() => "0").join(",");
    if (!(card.sample_rows && card.sample_rows[0])) $("example").hidden = true;
  }

  function setupKey() {
    const key = $("key");
    if (!config.key_required) {
      $("key-box").hidden = true;
      return;
    }
    key.value = config.api_key || "";
    $("key-note").textContent = config.api_key
      ? "Filled in when the page was made."
      : "This page holds no key: paste the API's key (`l2c deploy --show-key` prints it).";
    $("show-key").addEventListener("click", () => {
      const hidden = key.type === "password";
      key.type = hidden ? "text" : "password";
      $("show-key").textContent = hidden ? "Hide" : "Show";
    });
  }

  function inputs() {
    return names.map((_, index) => $(`feature-${index}`));
  }

  // One CSV row into the form: a header row naming the features is skipped, a spreadsheet's tabs
  // are separators too, and numbers are shown as numbers ("5.099999999999999645e+00" as 5.1).
  function parseRow(text) {
    const lines = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
    const split = (line) => line.split(line.includes("\t") ? "\t" : ",").map((cell) => cell.trim().replace(/^"(.*)"$/, "$1"));
    let rows = lines.map(split);
    const lower = names.map((name) => name.toLowerCase());
    if (rows.length && rows[0].every((cell, i) => cell.toLowerCase() === lower[i])) rows = rows.slice(1);
    if (!rows.length) return { error: `Paste a row of ${names.length} comma-separated values.` };
    const cells = rows[0];
    if (cells.length !== names.length) {
      return { error: `That row has ${cells.length} value${cells.length === 1 ? "" : "s"}; the model takes ${names.length}: ${names.join(", ")}.` };
    }
    const values = cells.map((cell) => {
      const number = Number(cell);
      return cell !== "" && Number.isFinite(number) ? String(number) : cell;
    });
    return { values, more: rows.length - 1 };
  }

  function fillFrom(text, quietWhenEmpty) {
    const note = $("csv-note");
    if (!text.trim() && quietWhenEmpty) {
      note.textContent = "";
      note.className = "note";
      return false;
    }
    const parsed = parseRow(text);
    if (parsed.error) {
      note.textContent = parsed.error;
      note.className = "note bad";
      return false;
    }
    inputs().forEach((input, index) => { input.value = parsed.values[index]; });
    note.textContent = parsed.more ? `Filled from the first row (${parsed.more} more ignored).` : "Filled from the row.";
    note.className = "note";
    return true;
  }

  function showIdle(text) {
    const result = $("result");
    result.className = "idle";
    result.textContent = text;
  }

  function showClassification(answer) {
    const first = (answer.predictions || [])[0] || {};
    const probabilities = first.probabilities || {};
    const predicted = first.label !== undefined ? String(first.label) : String(answer.prediction);
    const order = labels.length ? labels : Object.keys(probabilities);
    const result = $("result");
    result.className = "classification";
    result.replaceChildren();
    const verdict = el("p", "verdict");
    verdict.append(el("span", "label", predicted));
    if (Number.isFinite(probabilities[predicted])) {
      verdict.append(el("span", "confidence", `${(probabilities[predicted] * 100).toFixed(1)} % sure`));
    }
    result.append(verdict, el("p", "detail", "Probability of each class:"));
    const bars = el("ul", "bars");
    for (const label of order) {
      const p = Number(probabilities[label]) || 0;
      const row = el("li", label === predicted ? "bar-row top" : "bar-row");
      row.dataset.label = label;
      const track = el("span", "bar-track");
      const fill = el("span", "bar-fill");
      fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
      track.append(fill);
      track.setAttribute("role", "meter");
      track.setAttribute("aria-valuemin", "0");
      track.setAttribute("aria-valuemax", "1");
      track.setAttribute("aria-valuenow", String(p));
      track.setAttribute("aria-label", `probability of ${label}`);
      row.append(el("span", "bar-name", label), track, el("span", "bar-value", `${(p * 100).toFixed(1)} %`));
      bars.append(row);
    }
    result.append(bars);
  }

  // "$30,920" for a target the card says is in $1000s; else the number with its unit, if any.
  function formatValue(value) {
    if (target.currency && Number.isFinite(target.scale)) {
      try {
        return new Intl.NumberFormat("en-US", { style: "currency", currency: target.currency, maximumFractionDigits: 0 })
          .format(value * target.scale);
      } catch (err) { /* an unknown currency code: the plain number below */ }
    }
    const plain = value.toLocaleString("en-US", { maximumFractionDigits: 3 });
    return target.unit ? `${plain} ${target.unit}` : plain;
  }

  function showRegression(answer) {
    const first = (answer.predictions || [])[0] || {};
    const value = Number(first.value !== undefined ? first.value : answer.prediction);
    const result = $("result");
    result.className = "regression";
    result.replaceChildren();
    const verdict = el("p", "verdict");
    verdict.append(el("span", "value", Number.isFinite(value) ? formatValue(value) : String(answer.prediction)));
    result.append(verdict);
    if (Number.isFinite(value)) {
      const what = target.description ? target.description[0].toUpperCase() + target.description.slice(1) : "Predicted value";
      const column = target.name ? ` (${target.name})` : "";
      const unit = target.unit ? `, in ${target.unit}` : "";
      result.append(el("p", "detail", `${what}${column}: ${Number(value.toPrecision(4))}${unit}`));
    }
  }

  function showError(status, statusText, body, text) {
    const result = $("result");
    result.className = "error";
    result.replaceChildren();
    const reason = statusText || REASONS[status] || "";
    // The Lambda function answers {"error": code, "message": text}; API Gateway's own errors {"message": text}.
    const fields = body && typeof body === "object" ? body : {};
    const message = String(fields.message || fields.Message || fields.error || text.trim() || "(the API sent no message)");
    result.append(el("p", "status", `HTTP ${status}${reason ? " " + reason : ""}`), el("p", "message", message));
    if (fields.error && fields.message) result.append(el("p", "hint", `error code: ${fields.error}`));
    if (HINTS[status]) result.append(el("p", "hint", HINTS[status]));
  }

  function showUnreachable(err, timedOut) {
    const result = $("result");
    result.className = "error network";
    result.replaceChildren();
    if (timedOut) {
      result.append(el("p", "status", "No answer"), el("p", "message", `The API did not answer within ${TIMEOUT_MS / 1000} s.`));
      return;
    }
    result.append(
      el("p", "status", "Could not reach the API"),
      el("p", "message", `The request failed before any answer (${err && err.message ? err.message : "network error"}).`),
      el("p", "hint", `Either the API cannot be reached (is the local cloud running? is ${config.invoke_url} right?) ` +
        `or the browser blocked the answer because the API does not allow this page's origin (${window.location.origin}) for CORS.`),
    );
  }

  async function predict(event) {
    event.preventDefault();
    const button = $("predict");
    const values = inputs().map((input) => input.value.trim());
    const headers = { "Content-Type": "application/json" };
    const key = $("key").value.trim();
    if (config.key_required && key) headers["x-api-key"] = key;
    button.disabled = true;
    button.textContent = "Predicting…";
    showIdle("Asking the API…");
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    const started = performance.now();
    try {
      const response = await fetch(config.invoke_url, {
        method: "POST", mode: "cors", credentials: "omit", cache: "no-store", headers,
        body: JSON.stringify({ data: values.join(",") }), signal: controller.signal,
      });
      const text = await response.text();
      let body = null;
      try { body = JSON.parse(text); } catch (err) { /* not JSON: the text itself is shown */ }
      if (!response.ok) {
        showError(response.status, response.statusText, body, text);
      } else if (!body || typeof body !== "object") {
        showError(response.status, response.statusText, null, `The API answered ${response.status} with no JSON: ${text.slice(0, 200)}`);
      } else if (card.task === "classification") {
        showClassification(body);
      } else {
        showRegression(body);
      }
      const took = el("p", "took", `HTTP ${response.status} in ${Math.round(performance.now() - started)} ms`);
      $("result").append(took);
    } catch (err) {
      showUnreachable(err, controller.signal.aborted);
    } finally {
      clearTimeout(timer);
      button.disabled = false;
      button.textContent = "Predict";
    }
  }

  describeModel();
  buildInputs();
  setupKey();
  $("csv").addEventListener("input", () => fillFrom($("csv").value, true));
  $("fill").addEventListener("click", () => fillFrom($("csv").value, false));
  $("example").addEventListener("click", () => {
    $("csv").value = card.sample_rows[0].map(String).join(",");
    fillFrom($("csv").value, false);
  });
  $("form").addEventListener("submit", predict);
  document.body.dataset.ready = "true";
})();
