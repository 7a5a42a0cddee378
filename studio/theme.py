"""The studio's look: one Gradio theme and a little CSS, the same on every tab.

System fonts only (the studio works offline, so no web fonts are fetched); a calm indigo for
the one primary action of a tab, quiet grey for everything else. The CSS styles what the
theme cannot: the Generate tab's side column and piece cards, the job progress bar, the
engraved pages and the quiet notes under the controls.
"""
from __future__ import annotations

import gradio as gr

FONT = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def studio_theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", radius_size="md",
                          font=FONT, font_mono=MONO).set(
        button_large_padding="10px 18px",
        block_title_text_weight="600",
        block_title_background_fill="none",
        block_title_text_color="*neutral_700",
        block_title_padding="0",
        block_label_background_fill="none",
        body_background_fill="*neutral_50",
        block_background_fill="white",
    )


CSS = """
.studio-title h1 {margin: 4px 0 0; font-size: 1.6rem; letter-spacing: .01em}
.studio-title p {margin: 0; color: var(--body-text-color-subdued)}
#system-status {font-size: var(--text-sm)}
.quiet-note, .quiet-note p {color: var(--body-text-color-subdued); font-size: var(--text-sm)}
.cancel-button:disabled {opacity: .45}

/* Generate: controls at the side, the score in the middle */
#gen-side {position: sticky; top: 8px; align-self: flex-start; gap: 10px}
#gen-model-row {align-items: flex-end}
#gen-refresh {margin-bottom: 6px}
#gen-notes ul {margin: 2px 0 0; padding-left: 18px}
#gen-main {gap: 14px}
.piece-card {border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
             padding: 12px 14px; background: var(--block-background-fill); box-shadow: var(--block-shadow)}
.piece-heading p {margin: 0; font-size: var(--text-md)}
.rating-row {align-items: center}
#gen-live textarea {font-family: var(--font-mono); font-size: 12px; line-height: 1.45}
/* variations of one piece, or a bar's candidates, side by side (the note above them says what they are) */
#gen-pieces {gap: 14px}
#gen-pieces:has(.side-by-side) {flex-direction: row; flex-wrap: wrap; align-items: flex-start}
#gen-pieces:has(.side-by-side) > #gen-pieces-note {flex: 1 1 100%}
#gen-pieces:has(.side-by-side) > .piece-card {flex: 1 1 calc(50% - 7px); max-width: calc(50% - 7px)}
.side-by-side {margin: 0; font-weight: 600}
.rating-row .quiet-note {min-width: 90px}

/* engraved pages, and a piece being written */
.score-page, .sketch-page {border: 1px solid var(--border-color-primary); border-radius: 4px; margin-bottom: 8px}
.sketch {margin-bottom: 10px}

/* a score following its player (score_follow.js): the notes sounding, the bar they are in, a bar to click */
.score-sheet {position: relative; margin-bottom: 8px}
.score-sheet .score-page {display: block; margin-bottom: 0}
.score-sheet.follow-current .score-page {border-color: var(--color-accent)}
.follow-layer {position: absolute; inset: 1px; pointer-events: none}
.follow-bar {position: absolute; pointer-events: auto; cursor: pointer; border-radius: 4px}
.follow-bar:hover {box-shadow: inset 0 0 0 1px rgba(99, 102, 241, .5)}
.follow-bar.follow-current-bar {background: rgba(99, 102, 241, .10)}
.follow-note {position: absolute; border-radius: 45%; background: rgba(234, 88, 12, .45);
              box-shadow: 0 0 0 2px rgba(234, 88, 12, .6); mix-blend-mode: multiply}
.sketch-heading {margin: 0 0 6px; font-weight: 600; color: var(--body-text-color-subdued)}

/* a running job: stage, count and time left over a thin bar */
.job-progress {display: flex; flex-direction: column; gap: 6px; padding: 8px 2px}
.job-title {font-size: var(--text-xs); color: var(--body-text-color-subdued)}
.job-words {display: flex; justify-content: space-between; gap: 12px; font-size: var(--text-sm)}
.job-stage {font-weight: 600}
.job-left {color: var(--body-text-color-subdued); white-space: nowrap}
.job-track {height: 8px; border-radius: 4px; background: var(--neutral-200); overflow: hidden}
.job-fill {height: 100%; background: var(--color-accent); border-radius: 4px; transition: width .5s ease}
.job-busy .job-fill {width: 30%; animation: job-busy 1.4s ease-in-out infinite}
@keyframes job-busy {from {margin-left: -30%} to {margin-left: 100%}}

/* Library: a piece compared with others of its prompt */
#library-judged {padding: 6px 12px}
#library-judged ul {margin: 2px 0 0; padding-left: 18px}
"""
