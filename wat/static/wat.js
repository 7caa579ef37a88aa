// The WAT's own script: the DI upload with a progress bar (an XHR PUT of the file to the
// API, which streams it into the image store). Everything else is htmx.
"use strict";

function startUpload(form) {
  const file = form.querySelector("#upload-file").files[0];
  const status = form.querySelector("#upload-status");
  const bar = form.querySelector("#upload-progress");
  if (!file) { status.textContent = "choose an image file first"; return; }
  const params = new URLSearchParams({osf: form.osf.value.trim(), name: file.name});
  if (form.version.value.trim()) params.set("version", form.version.value.trim());
  if (form.tenant) params.set("tenant", form.tenant.value);
  const xhr = new XMLHttpRequest();
  xhr.open("PUT", form.dataset.upload + "?" + params.toString());
  bar.hidden = false;
  bar.value = 0;
  status.textContent = "uploading " + file.name + " ...";
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.floor(100 * e.loaded / e.total); };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
    if (xhr.status >= 200 && xhr.status < 300) {
      bar.value = 100;
      status.textContent = "uploaded: " + ((body.said || []).join("; ") || body.message || "done");
      status.className = "ok";
    } else {
      status.textContent = "refused: " + (body.detail || xhr.statusText);
      status.className = "error";
    }
  };
  xhr.onerror = () => { status.textContent = "the upload was cut: nothing was kept"; status.className = "error"; };
  xhr.send(file);
}

document.addEventListener("submit", (event) => {
  if (event.target.id === "upload-form") {
    event.preventDefault();
    startUpload(event.target);
  }
});
