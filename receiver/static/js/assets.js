// An image or video field: upload a file (POST /api/assets, multipart) or paste an asset id.
// Assets a job uses must sit on the Runway account that runs it, so a second upload goes to the
// account the first one landed on.

import {api} from "./api.js";
import {h, setText} from "./dom.js";

/**
 * Build the field. ``state`` keeps, across re-renders: ``values[name]`` (the asset id),
 * ``previews[name]`` ({url, kind}) and ``accounts[name]`` (where it was uploaded).
 */
export function assetField({name, label, required, kind, hint, state, onChange, account}) {
  const fileId = `${name}-file`;
  const file = h("input", {type: "file", id: fileId, accept: `${kind}/*`, "aria-describedby": `hint-${name} err-${name}`});
  const text = h("input", {id: name, name, type: "text", placeholder: "user:…-runwayml:…-asset:…", autocomplete: "off",
    spellcheck: "false", "aria-label": `${label}: asset id`});
  text.value = state.values[name] || "";
  const status = h("p", {class: "hint", id: `hint-${name}`, "aria-live": "polite"}, hint || "");
  const media = kind === "video" ? h("video", {muted: true, playsinline: true, preload: "metadata"}) : h("img", {alt: ""});
  const shown = h("span", {class: "mono"});
  const remove = h("button", {type: "button", class: "btn small ghost"}, "Remove");
  const preview = h("div", {class: "asset-preview", hidden: true}, media, shown, remove);
  const error = h("p", {class: "field-error", id: `err-${name}`, hidden: true});

  function show() {
    const id = state.values[name];
    const seen = state.previews[name];
    preview.hidden = !id;
    setText(shown, id || "");
    if (seen && seen.id === id) {
      media.src = seen.url;
      media.hidden = false;
    } else {
      media.removeAttribute("src");
      media.hidden = true;
    }
  }

  text.addEventListener("input", () => {
    state.values[name] = text.value.trim();
    delete state.accounts[name];
    show();
    onChange();
  });
  remove.addEventListener("click", () => {
    state.values[name] = "";
    delete state.previews[name];
    delete state.accounts[name];
    text.value = "";
    file.value = "";
    show();
    onChange();
    file.focus();
  });
  async function send(chosen) {
    error.hidden = true;
    file.removeAttribute("aria-invalid");
    setText(status, `Uploading ${chosen.name}…`);
    const form = new FormData();
    form.append("file", chosen, chosen.name);
    const where = account() || Object.values(state.accounts).find(Boolean);
    if (where) form.append("email", where);
    try {
      const answer = await api("/api/assets", {method: "POST", form});
      state.values[name] = answer.assetId;
      state.accounts[name] = answer.account || null;
      text.value = answer.assetId;
      state.previews[name] = {id: answer.assetId, url: await localUrl(chosen, kind)};
      setText(status, `Uploaded ${chosen.name}${answer.account ? ` to ${answer.account}` : ""}.`);
      show();
      onChange();
    } catch (failure) {
      setText(status, hint || "");
      error.hidden = false;
      setText(error, `Upload failed: ${failure.message}`);
      file.setAttribute("aria-invalid", "true");
    }
  }

  file.addEventListener("change", () => file.files && file.files[0] && send(file.files[0]));
  // With the built-in simulator, a sample to upload: trying every model needs no files at hand.
  let sampleButton = null;
  if (document.body.dataset.simulated) {
    const sample = kind === "video" ? "video.mp4" : "image.jpg";
    sampleButton = h("button", {type: "button", class: "btn small", id: `${name}-sample`}, `Use a sample ${kind}`);
    sampleButton.addEventListener("click", async () => {
      const blob = await (await fetch(`/samples/${sample}`)).blob();
      await send(new File([blob], `sample-${sample}`, {type: blob.type}));
    });
  }
  show();
  const marker = required ? h("span", {class: "req"}, "required") : h("span", {class: "opt"}, "optional");
  return h("div", {class: "field", dataset: {field: name}},
    h("label", {for: fileId}, label, marker),
    h("div", {class: "asset"},
      h("div", {class: "asset-row"}, file, sampleButton),
      preview,
      status,
      h("details", {}, h("summary", {}, "or use an asset id you already have"), text)),
    error);
}

/** A URL the page may show: a data: URL for images (img-src allows it), a blob: URL for video. */
function localUrl(file, kind) {
  if (kind === "video") return Promise.resolve(`${URL.createObjectURL(file)}#t=0.5`); // a frame, not black
  return new Promise(resolve => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(String(reader.result)));
    reader.addEventListener("error", () => resolve(""));
    reader.readAsDataURL(file);
  });
}
