// Search page: upload, drop or record a clip; show matches with players, genre chips, the clip's
// genres and the duplicate banner; the last answer is kept for the session and shown again on Back.
"use strict";

const form = document.getElementById("search-form");
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const statusBox = document.getElementById("status");
const errorBox = document.getElementById("error");
const banner = document.getElementById("banner");
const panel = document.getElementById("classification");
const results = document.getElementById("results");
const recordButton = document.getElementById("record");
const submitButton = document.getElementById("submit");
const kInput = document.getElementById("k");
const STORED = "mirsearch.last-search";  // sessionStorage: the answer shown last, for Back
let clip = null;          // the Blob searched last (a file or a recording)
let clipName = "clip";
let genre = null;         // the genre chip in force
let matched = null;       // the clip the banner and genres are about: a chip or k asks only search
let shown = null;         // the answer on screen: {name, genre, found, dupes, classified}
let asked = 0;            // searches started: an answer that arrives after a newer one is dropped
let pending = null;       // the clip whose answer is awaited: Search is off meanwhile
let again = false;        // a chip pressed while it is awaited: search once more when it is in
const PAGE_TITLE = document.title;  // the page's own: its title again when no answer is shown
const SLOW_MS = 4000;     // an answer not in by then: say that a long file takes a while
// results whose player asks the server for its track's length at once; the rest load when played
// (a Results value of 1,000 had sent as many requests for audio with every answer)
const PRELOADED = 5;

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

// Its title, else its file's name: a title of zero-width spaces only is none (mirsearch.containers)
function trackName(hit) {
  return /[^\p{Cc}\p{Cf}\p{Z}]/u.test(hit.title || "") ? hit.title : hit.path.split("/").pop();
}

// Catalog text (a title, a tag) in an element of its own whose direction is its own: a
// right-to-left override in a tag reverses the tag only, not the score or speed after it
function userText(tag, value, className) {
  const el = text(tag, value, className);
  el.dir = "auto";
  return el;
}

function trackLink(hit) {
  const a = document.createElement("a");
  a.append(text("bdi", trackName(hit)));
  a.href = `/tracks/${hit.track_id}`;
  return a;
}

// "by <artist>" (the name isolated), or nothing for a hit with no artist in its tags
function byArtist(hit) {
  if (!/[^\p{Cc}\p{Cf}\p{Z}]/u.test(hit.artist || "")) return [];
  const by = text("span", "by ", "artist");
  by.append(text("bdi", hit.artist));
  return [by];
}

// "plays 2 % faster than <other>" for `speed` times as fast (the duplicates page says the same)
function pace(speed, other) {
  const percent = Math.round(1000 * (speed - 1)) / 10;
  if (!percent) return `plays at the same speed as ${other}`;
  return `plays ${Math.abs(percent)} % ${percent > 0 ? "faster" : "slower"} than ${other}`;
}

// The model's genre, and the file's tag beside it when they differ (a genre filter keeps either)
function genreLabel(hit) {
  const tagged = (hit.tag_genre || "").trim();
  if (!tagged || tagged.toLowerCase() === (hit.genre || "").toLowerCase()) return hit.genre || "";
  return hit.genre ? `${hit.genre} · tagged ${tagged}` : `tagged ${tagged}`;
}

function errorMessage(body, response) {
  return (body && body.error && body.error.message) || `${response.status} ${response.statusText}`;
}

async function post(url, extra) {
  const data = new FormData();
  data.append("file", clip, clipName);
  for (const [key, value] of Object.entries(extra || {})) data.append(key, value);
  // no answer at all (the server down, the connection lost): fetch's own "Failed to fetch" had
  // been told as if it were the clip's fault
  const response = await fetch(url, { method: "POST", body: data }).catch(() => {
    const error = new Error("the server could not be reached: check the connection and search again");
    error.code = "unreachable";
    throw error;
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(errorMessage(body, response));
    error.code = body && body.error && body.error.code;
    throw error;
  }
  return body;
}

// `message` about the clip `name` (its own words isolated), or about no clip
function showError(message, name) {
  errorBox.replaceChildren(...(name ? [text("bdi", name), ": "] : []), message);
  errorBox.hidden = !message;
}

function showResults(list) {
  results.replaceChildren();
  results.classList.remove("stale");
  if (!list) return;
  for (const [rank, hit] of list.entries()) {
    const li = document.createElement("li");
    li.className = "hit";
    li.append(trackLink(hit), ...byArtist(hit), userText("span", genreLabel(hit), "muted"));
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, hit.score) * 100}%`;
    bar.append(fill);
    // played from where the part of the clip that lines up with it begins (a track that starts
    // partway into the clip: its own start, not where the clip's start would fall)
    const at = hit.track_offset_s;
    const where = hit.query_offset_s > 0 ? ` (your clip from ${hit.query_offset_s.toFixed(1)} s)` : "";
    li.append(bar, text("span", `${hit.score.toFixed(3)} · at ${at.toFixed(1)} s${where}`, "muted"));
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = rank < PRELOADED ? "metadata" : "none";
    audio.src = `/api/tracks/${hit.track_id}/audio#t=${at}`;
    audio.dataset.offset = at;
    audio.setAttribute("aria-label", `Play ${trackName(hit)} from ${at.toFixed(1)} s`);
    audio.addEventListener("loadedmetadata", () => { audio.currentTime = at; }, { once: true });
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
    const li = document.createElement("li");
    li.append(trackLink(m), `: ${m.duration_s.toFixed(1)} s from ${m.query_offset_s.toFixed(1)} s ` +
      `of the upload = from ${m.track_offset_s.toFixed(1)} s of the track; the upload ` +
      `${pace(m.speed, "the track")} (score ${m.score.toFixed(2)})`);
    ul.append(li);
  }
  banner.append(ul);
  banner.hidden = false;
}

// The clip's genres and tags
function showClassification(classified) {
  panel.hidden = !classified;
  if (!classified) return;
  const genres = document.getElementById("clip-genres");
  const tags = document.getElementById("clip-tags");
  const best = Object.entries(classified.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 5);
  genres.replaceChildren(...best.map(([name, p]) => {
    const li = document.createElement("li");
    const bar = text("span", "", "bar");
    const fill = document.createElement("span");
    fill.style.width = `${100 * p}%`;
    bar.append(fill);
    li.append(userText("span", name, "label"), bar, text("span", p.toFixed(2), "value"));
    return li;
  }));
  tags.replaceChildren(...classified.tags.slice(0, 6).map((t) => {
    const chip = text("span", "", "chip");
    chip.append(text("bdi", t.tag), " ", text("small", t.score.toFixed(2)));
    return chip;
  }));
}

// "2 results for clip.wav in rock", the names isolated
function summary(answer) {
  const n = answer.found.length;
  const parts = [`${n} result${n === 1 ? "" : "s"} for `, text("bdi", answer.name)];
  if (answer.genre) parts.push(" in ", text("bdi", answer.genre));
  return parts;
}

// An answer on screen, or (null) none
function show(answer) {
  shown = answer;
  showResults(answer && answer.found);
  showBanner(answer ? answer.dupes : []);
  showClassification(answer && answer.classified);
  statusBox.replaceChildren(...(answer ? summary(answer) : []));
  document.title = answer ? `${statusBox.textContent} · mirsearch` : PAGE_TITLE;
}

function markChips() {
  for (const chip of document.querySelectorAll(".chip[data-genre]")) {
    chip.classList.toggle("active", chip.dataset.genre === genre);
    chip.setAttribute("aria-pressed", String(chip.dataset.genre === genre));
  }
}

// Search off (and the results marked busy) while `awaited`'s answer is on its way
function busy(awaited) {
  pending = awaited;
  submitButton.disabled = Boolean(awaited);
  results.setAttribute("aria-busy", String(Boolean(awaited)));
}

// The clip to search: the one taken last, else the file the picker holds. Back shows the page
// again with the file the picker had but none of the script's own state: Search had asked for a
// clip beside the file's name, and a chip had thrown the answer away
function chosen() {
  if (!clip && fileInput.files.length) {
    clip = fileInput.files[0];
    clipName = clip.name;
  }
  return clip;
}

async function runSearch() {
  if (!chosen()) { statusBox.textContent = "Choose, drop or record a clip first."; return; }
  if (clip === pending) { again = true; return; }  // not sent twice: asked again once it is in
  if (!kInput.checkValidity()) return;  // said by its "invalid" event; the answer shown stays
  const number = ++asked;
  again = false;
  const asking = clip;
  const name = clipName;
  const fresh = asking !== matched || !shown;  // a new clip: its duplicates and genres are asked too
  // k as a whole number: the box takes "3.0" and "2e0" as 3 and 2, which the API refuses
  const extra = { k: kInput.value && String(kInput.valueAsNumber) };
  if (genre) extra.genre = genre;
  showError("");
  if (fresh) {
    show(null);  // the last clip's answer must not pass for this one's
    sessionStorage.removeItem(STORED);
  } else {
    results.classList.add("stale");
  }
  statusBox.replaceChildren("Searching for ", text("bdi", name), "…");
  busy(asking);
  const slow = setTimeout(() => {
    if (number === asked) statusBox.append(" A long file can take a minute.");
  }, SLOW_MS);
  try {
    // a new clip is sent once and read once for all three (POST /api/examine); a chip or k
    // asks the search alone of the clip on screen
    const body = await post(fresh ? "/api/examine" : "/api/search", extra);
    if (number !== asked) return;
    matched = asking;
    const dupes = fresh ? body.matches : shown.dupes;
    const classified = fresh
      ? { genre: body.genre, probabilities: body.probabilities, tags: body.tags }
      : shown.classified;
    const answer = { name, genre, found: body.results, dupes, classified };
    show(answer);
    sessionStorage.setItem(STORED, JSON.stringify(answer));
  } catch (err) {
    if (number !== asked) return;
    matched = null;
    again = false;
    show(null);
    // a parameter's error (k, a genre) or no answer at all is not the clip's: not said as if it were
    const about = ["invalid_parameter", "unreachable"].includes(err.code) ? null : name;
    showError(err.message.replace(/^the upload:\s*/, ""), about);
  } finally {
    clearTimeout(slow);
    if (number === asked) {
      busy(null);
      if (again) runSearch();
    }
  }
}

// The answer shown last in this tab (left for a track page, then Back, or reloaded)
function restore() {
  const stored = sessionStorage.getItem(STORED);
  if (!stored) return;
  const answer = JSON.parse(stored);
  genre = answer.genre;
  markChips();
  show(answer);
  statusBox.append(" (your last search: ", text("span", "choose a clip to search again", "again"), ")");
}

// The browser puts the file back in the picker after the script has run (before "pageshow"):
// Search asks again of it (`chosen`), which the restored answer's status says
window.addEventListener("pageshow", () => {
  const hint = statusBox.querySelector("span.again");
  if (hint && fileInput.files.length && !pending) hint.textContent = "Search runs it again";
});

// k out of bounds: said (the browser's words) before anything is sent, and in place of the last
// message, which had stayed beside the browser's own tooltip
kInput.addEventListener("invalid", () => showError(`Results: ${kInput.validationMessage}`));
// one result heard at a time: a player started pauses the one playing before ("play" does not
// bubble: caught on its way down)
results.addEventListener("play", (event) => {
  for (const audio of results.querySelectorAll("audio")) if (audio !== event.target) audio.pause();
}, true);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!submitButton.disabled) runSearch();
});
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

for (const chip of document.querySelectorAll(".chip[data-genre]")) {
  chip.addEventListener("click", () => {
    genre = genre === chip.dataset.genre ? null : chip.dataset.genre;
    markChips();
    if (chosen()) { runSearch(); return; }
    // no clip to search again (none yet, or the answer on screen was restored after Back):
    // results of another genre must not stay beside the chip pressed
    show(null);
    statusBox.replaceChildren("Choose, drop or record a clip to search",
      ...(genre ? [" in ", text("bdi", genre)] : []), ".");
  });
}

let recorder = null;
recordButton.addEventListener("click", async () => {
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record audio.");
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
    showError(`Cannot record: ${err.message}`);
  }
});

restore();
