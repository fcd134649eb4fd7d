// Seller center: import a key file in chunks of whole lines, with a progress
// bar and the rejected lines listed as they come. The file is read here, in
// the browser; each chunk is posted to the web service, which hands it to
// inventory as one import (idempotent: a chunk sent again is imported once)
// and answers with the chunk's report, line numbers as in the file.
(function () {
  "use strict";

  var LINE_BREAK = /\r\n|\r|\n/;

  function splitLines(text) {
    var lines = text.replace(/^\ufeff/, "").split(LINE_BREAK);
    if (lines.length && lines[lines.length - 1] === "") { lines.pop(); }
    return lines;
  }

  // Chunks of at most `maxLines` lines and about `maxChars` characters.
  function chunksOf(lines, maxLines, maxChars) {
    var chunks = [], start = 0;
    while (start < lines.length) {
      var end = start, size = 0;
      while (end < lines.length && end - start < maxLines) {
        size += lines[end].length + 1;
        if (size > maxChars && end > start) { break; }
        end += 1;
      }
      chunks.push({ firstLine: start + 1, lines: lines.slice(start, end) });
      start = end;
    }
    return chunks;
  }

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, name) {
      return values[name] !== undefined ? String(values[name]) : "";
    });
  }

  function start(section) {
    var form = section.querySelector("form");
    var bar = section.querySelector("progress");
    var status = section.querySelector(".import-status");
    var table = section.querySelector("table[data-testid=import-rejections]");
    var rows = table.querySelector("tbody");
    var data = section.dataset;

    function addRejection(line) {
      var row = document.createElement("tr");
      var number = document.createElement("td");
      var reason = document.createElement("td");
      number.textContent = String(line.line);
      reason.textContent = line.reason_text || line.reason;
      reason.dataset.reason = line.reason;
      row.appendChild(number);
      row.appendChild(reason);
      rows.appendChild(row);
      table.hidden = false;
    }

    async function send(chunk, fileFormat) {
      var response = await fetch(data.importUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": data.csrf },
        body: JSON.stringify({
          upload_id: data.uploadId,
          format: fileFormat,
          first_line: chunk.firstLine,
          content: chunk.lines.map(function (l) { return l + "\n"; }).join(""),
        }),
      });
      if (!response.ok) { throw new Error(String(response.status)); }
      return response.json();
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      var file = form.elements.file.files[0];
      if (!file) { return; }
      var fileFormat = form.elements.format.value;
      var lines = splitLines(await file.text());
      if (!lines.length) { status.textContent = data.textEmpty; return; }
      var chunks = chunksOf(lines, Number(data.chunkLines), Number(data.maxChunkChars));
      var totals = { imported: 0, duplicates: 0, rejected: 0, done: 0, lines: lines.length };
      rows.textContent = "";
      table.hidden = true;
      bar.hidden = false;
      bar.max = lines.length;
      bar.value = 0;
      form.querySelector("button").disabled = true;
      section.dataset.state = "running";
      try {
        for (var i = 0; i < chunks.length; i += 1) {
          var report = await send(chunks[i], fileFormat);
          totals.imported += report.imported;
          totals.duplicates += report.duplicates;
          totals.rejected += report.rejected;
          totals.done += chunks[i].lines.length;
          report.rejected_lines.forEach(addRejection);
          bar.value = totals.done;
          status.textContent = format(data.textProgress, totals);
        }
        status.textContent = format(data.textDone, totals);
        section.dataset.state = "done";
        document.body.dispatchEvent(new CustomEvent("kami:imported", { bubbles: true }));
      } catch (error) {
        status.textContent = format(data.textFailed, totals);
        section.dataset.state = "failed";
      } finally {
        form.querySelector("button").disabled = false;
      }
    });
  }

  function init() {
    var section = document.getElementById("key-import");
    if (section && !section.dataset.ready) {
      section.dataset.ready = "1";
      start(section);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
