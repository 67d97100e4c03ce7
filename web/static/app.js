// Search page: upload, drop or record a clip; show matches with players, genre chips, duplicate banner.
"use strict";

const form = document.getElementById("search-form");
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const statusBox = document.getElementById("status");
const banner = document.getElementById("banner");
const results = document.getElementById("results");
const recordButton = document.getElementById("record");
let clip = null;          // the Blob searched last (a file or a recording)
let clipName = "clip";
let genre = null;         // the genre chip in force
let matched = null;       // the clip the duplicate banner is about: a chip or k asks only search
let asked = 0;            // searches started: an answer that arrives after a newer one is dropped

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

function errorMessage(body, response) {
  return (body && body.error && body.error.message) || `${response.status} ${response.statusText}`;
}

async function post(url, extra) {
  const data = new FormData();
  data.append("file", clip, clipName);
  for (const [key, value] of Object.entries(extra || {})) data.append(key, value);
  const response = await fetch(url, { method: "POST", body: data });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorMessage(body, response));
  return body;
}

function showResults(list) {
  results.replaceChildren();
  for (const hit of list) {
    const li = document.createElement("li");
    li.className = "hit";
    const title = document.createElement("a");
    title.href = `/tracks/${hit.track_id}`;
    title.textContent = hit.title || hit.path.split("/").pop();
    li.append(title, text("span", hit.genre || "", "muted"));
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, hit.score) * 100}%`;
    bar.append(fill);
    li.append(bar, text("span", `${hit.score.toFixed(3)} · at ${hit.offset_s.toFixed(1)} s`, "muted"));
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = `/api/tracks/${hit.track_id}/audio#t=${hit.offset_s}`;
    audio.dataset.offset = hit.offset_s;
    audio.addEventListener("loadedmetadata", () => { audio.currentTime = hit.offset_s; }, { once: true });
    li.append(audio);
    results.append(li);
  }
  if (!list.length) results.append(text("li", "No results.", "muted"));
}

function showBanner(matches) {
  if (!matches.length) { banner.hidden = true; return; }
  banner.replaceChildren(text("strong", "Near-duplicate: this upload contains catalog audio."));
  const ul = document.createElement("ul");
  for (const m of matches) {
    ul.append(text("li", `${m.title || m.path.split("/").pop()} (track ${m.track_id}): upload ` +
      `${m.query_offset_s.toFixed(1)} s = track ${m.track_offset_s.toFixed(1)} s for ` +
      `${m.duration_s.toFixed(1)} s, speed ${m.speed.toFixed(3)}, score ${m.score.toFixed(2)}`));
  }
  banner.append(ul);
  banner.hidden = false;
}

async function runSearch() {
  if (!clip) { statusBox.textContent = "Choose, drop or record a clip first."; return; }
  statusBox.textContent = "Searching…";
  const number = ++asked;
  const asking = clip;
  const extra = { k: document.getElementById("k").value };
  if (genre) extra.genre = genre;
  try {
    const [found, dupes] = await Promise.all([
      post("/api/search", extra),
      asking === matched ? null : post("/api/match"),
    ]);
    if (number !== asked) return;
    showResults(found.results);
    if (dupes) {
      showBanner(dupes.matches);
      matched = asking;
    }
    statusBox.textContent = `${found.results.length} results for ${clipName}` + (genre ? ` in ${genre}` : "");
  } catch (err) {
    if (number === asked) statusBox.textContent = `Error: ${err.message}`;
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); runSearch(); });
fileInput.addEventListener("change", () => {
  if (fileInput.files.length) { clip = fileInput.files[0]; clipName = clip.name; runSearch(); }
});
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) {
    clip = event.dataTransfer.files[0];
    clipName = clip.name;
    runSearch();
  }
});

for (const chip of document.querySelectorAll(".chip")) {
  chip.addEventListener("click", () => {
    genre = genre === chip.dataset.genre ? null : chip.dataset.genre;
    for (const other of document.querySelectorAll(".chip")) {
      other.classList.toggle("active", other.dataset.genre === genre);
    }
    if (clip) runSearch();
  });
}

let recorder = null;
recordButton.addEventListener("click", async () => {
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    statusBox.textContent = "This browser cannot record audio.";
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => chunks.push(event.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      clip = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
      clipName = "recording.webm";
      recordButton.textContent = "● Record what is playing";
      runSearch();
    };
    recorder.start();
    recordButton.textContent = "■ Stop and search";
    statusBox.textContent = "Recording… (10 s or more works best)";
  } catch (err) {
    statusBox.textContent = `Cannot record: ${err.message}`;
  }
});
