// The score follows its player: the notes sounding light up on the engraved pages, the current bar is shaded
// and kept in view (turning to the next page when the music gets there), and a click on a bar plays from it.
//
// Each `.score-follow` (studio/piece_view.py) carries its piece's follow data (pipelines/render/follow.py) in
// `data-follow` and holds one `.score-sheet` per page, an <img> of the page inside. Its player is the Gradio
// Audio in the same `.piece-card`; Gradio plays through WaveSurfer, whose <audio> sits in a shadow root. Gradio
// replaces a score's HTML and a player's audio when a new piece is shown, so nothing is bound once: a timer
// looks up each score every tick (and its player again when the one it had left the page), and clicks are
// caught on the document.
// State for tests and curious eyes: data-page (1-based), data-bar, data-lit-notes (ids) and data-ms.

const TICK_MS = 50;
const scores = new WeakMap(); // .score-follow element -> what was built for it and what it shows

function playerOf(score) {
  const card = score.closest(".piece-card") || score.parentElement;
  if (!card) return null;
  for (const host of card.querySelectorAll("*")) { // WaveSurfer's, first: Gradio keeps a bare <audio> hidden
    const audio = host.shadowRoot && host.shadowRoot.querySelector("audio");
    if (audio && (audio.currentSrc || audio.src)) return audio;
  }
  for (const audio of card.querySelectorAll("audio")) {
    if (audio.currentSrc || audio.src) return audio;
  }
  return null;
}

function box(element, [x, y, w, h], pad) {
  element.style.left = `calc(${x * 100}% - ${pad}px)`;
  element.style.top = `calc(${y * 100}% - ${pad}px)`;
  element.style.width = `calc(${w * 100}% + ${2 * pad}px)`;
  element.style.height = `calc(${h * 100}% + ${2 * pad}px)`;
  return element;
}

function build(score) {
  const data = JSON.parse(score.dataset.follow); // bad data throws: tick() stops this score
  const sheets = [...score.querySelectorAll(".score-sheet")];
  const layers = sheets.map((sheet) => {
    const layer = document.createElement("div");
    layer.className = "follow-layer";
    sheet.appendChild(layer);
    return layer;
  });
  const bars = new Map();
  for (const bar of data.bars) {
    if (!layers[bar.page]) continue;
    const spot = box(document.createElement("div"), bar.box, 2);
    spot.className = "follow-bar";
    spot.dataset.ms = bar.ms;
    spot.dataset.bar = bar.id;
    spot.title = "Play from this bar";
    layers[bar.page].appendChild(spot);
    bars.set(bar.id, { ...bar, spot });
  }
  return { data, sheets, layers, bars, marks: [], ms: -1, playing: false, bar: null, page: -1, audio: null };
}

function barAt(state, note) {
  const [page, x, y, w, h] = note;
  const cx = x + w / 2, cy = y + h / 2;
  for (const bar of state.bars.values()) {
    const [bx, by, bw, bh] = bar.box;
    if (bar.page === page && bx <= cx && cx <= bx + bw && by <= cy && cy <= by + bh) return bar;
  }
  return null;
}

function show(score, state, ms, playing) {
  const lit = [];
  if (playing || ms > 0) {
    for (const [on, off, id] of state.data.spans) {
      if (on > ms) break;
      if (off > ms && state.data.notes[id]) lit.push(id);
    }
  }
  if (lit.join(" ") !== score.dataset.litNotes) {
    state.marks.forEach((mark) => mark.remove());
    state.marks = lit.map((id) => {
      const note = state.data.notes[id];
      const mark = box(document.createElement("div"), note.slice(1), 3);
      mark.className = "follow-note";
      mark.dataset.note = id;
      state.layers[note[0]].appendChild(mark);
      return mark;
    });
  }
  let bar = state.bar; // between notes (a rest in every part) the bar stays
  if (lit.length) bar = barAt(state, state.data.notes[lit[0]]) || bar;
  else if (!playing && ms === 0) bar = null;
  if (bar !== state.bar) {
    if (state.bar) state.bar.spot.classList.remove("follow-current-bar");
    if (bar) bar.spot.classList.add("follow-current-bar");
    state.bar = bar;
    if (bar && playing) keepInView(bar.spot);
  }
  const page = bar ? bar.page : -1;
  if (page !== state.page) {
    state.sheets.forEach((sheet, n) => sheet.classList.toggle("follow-current", n === page));
    state.page = page;
  }
  score.dataset.litNotes = lit.join(" ");
  score.dataset.page = page >= 0 ? String(page + 1) : "";
  score.dataset.bar = bar ? bar.id : "";
  score.dataset.ms = String(Math.round(ms));
}

function keepInView(element) { // when over a quarter of the bar is off the screen, bring it to the middle
  const rect = element.getBoundingClientRect();
  const height = window.innerHeight || document.documentElement.clientHeight;
  const hidden = Math.max(0, -rect.top) + Math.max(0, rect.bottom - height);
  if (hidden > rect.height / 4) element.scrollIntoView({ block: "center", behavior: "smooth" });
}

function follow(score) {
  let state = scores.get(score);
  if (state === undefined) {
    state = build(score);
    scores.set(score, state);
  }
  if (!state) return;
  if (!(state.audio && state.audio.isConnected && (state.audio.currentSrc || state.audio.src))) {
    state.audio = playerOf(score); // first, or Gradio gave the card a new player
  }
  const audio = state.audio;
  const ms = audio ? audio.currentTime * 1000 : 0;
  const playing = Boolean(audio && !audio.paused && !audio.ended);
  if (ms !== state.ms || playing !== state.playing) {
    show(score, state, ms, playing);
    state.ms = ms;
    state.playing = playing;
  }
}

function tick() {
  for (const score of document.querySelectorAll(".score-follow[data-follow]")) {
    try {
      follow(score);
    } catch (error) { // one score's bad data stops that score, not the others
      console.warn("score follow: this score stops following", error);
      scores.set(score, null);
    }
  }
}

document.addEventListener("click", (event) => {
  const spot = event.target.closest && event.target.closest(".follow-bar");
  const score = spot && spot.closest(".score-follow");
  const audio = score && playerOf(score);
  if (!audio) return;
  audio.currentTime = Number(spot.dataset.ms) / 1000;
  audio.play().catch((error) => console.warn("score follow: the player would not start", error));
});
setInterval(tick, TICK_MS);
