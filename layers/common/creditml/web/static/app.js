// CreditML web UI: a little behaviour on top of server-rendered pages. No inline script
// anywhere (the Content-Security-Policy forbids it), no library, nothing loaded from elsewhere.
"use strict";

// A form marked data-once submits once: a double click sends one request. (The server is
// safe either way: the form's Idempotency-Key makes a second submission a replay.)
function submitOnce(form) {
  form.addEventListener("submit", (event) => {
    if (form.dataset.sent === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "1";
    for (const button of form.querySelectorAll("button")) {
      button.setAttribute("aria-disabled", "true");
    }
  });
}

function confirmFirst(form) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
}

// A pending model's page reloads until registration decides (ready or rejected).
function pollStatus(element) {
  const delay = Number(element.dataset.poll) || 2000;
  window.setTimeout(() => window.location.reload(), delay);
}

function showError(box, message) {
  box.textContent = message;
  box.hidden = false;
  box.focus();
}

function uploadFile(upload, file, progress) {
  return new Promise((resolve, reject) => {
    const body = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) {
      body.append(name, value);
    }
    body.append("file", file);
    const request = new XMLHttpRequest();
    request.open("POST", upload.url);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        progress.value = Math.round((100 * event.loaded) / event.total);
      }
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        resolve();
      } else {
        reject(new Error("The upload was refused (HTTP " + request.status + ")."));
      }
    });
    request.addEventListener("error", () => reject(new Error("The upload failed: check your connection and try again.")));
    request.send(body);
  });
}

// The form's own fields named in data-upload go to the web function, which answers the
// presigned POST (a new model, or a new version of one).
async function createModel(form) {
  const fields = new URLSearchParams();
  for (const name of form.dataset.upload.split(" ")) {
    fields.append(name, form.elements[name].value);
  }
  const answer = await fetch(form.action, {
    method: "POST",
    body: fields,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  const type = answer.headers.get("Content-Type") || "";
  if (!type.startsWith("application/json")) {
    throw new Error("Your session has ended or this page is out of date: reload it and log in again.");
  }
  const created = await answer.json();
  if (!answer.ok) {
    throw new Error(created.detail || created.title || "Publishing failed.");
  }
  return created;
}

// Publishing (a model or a version): create it here, then send the file from the browser
// straight to the presigned POST (the uploads bucket), then open the model's page, which
// shows its status. A failed upload is retried with the same presigned POST, never a new one.
function publish(form) {
  const box = form.querySelector("[data-upload-error]");
  const progress = form.querySelector("[data-upload-progress]");
  const maxBytes = Number(form.dataset.maxBytes);
  let created = null;
  box.setAttribute("tabindex", "-1");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.dataset.sent === "1") {
      return;
    }
    const file = form.elements.file.files[0];
    if (!file) {
      showError(box, "File: choose the model file to upload.");
      return;
    }
    if (file.size > maxBytes) {
      showError(box, "File: the model file is larger than " + maxBytes.toLocaleString() + " bytes.");
      return;
    }
    form.dataset.sent = "1";
    box.hidden = true;
    try {
      created = created || (await createModel(form));
      progress.hidden = false;
      await uploadFile(created.upload, file, progress);
      window.location.assign(created.page);
    } catch (error) {
      form.dataset.sent = "0";
      showError(box, error.message);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-once]").forEach(submitOnce);
  document.querySelectorAll("form[data-confirm]").forEach(confirmFirst);
  document.querySelectorAll("[data-poll]").forEach(pollStatus);
  document.querySelectorAll("form[data-upload]").forEach(publish);
});
