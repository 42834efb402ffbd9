"""Synthetic datasets in the real datasets' file formats (DESIGN.md §7), so the real adapters run
end to end with known ground truth. `concepts` is the vocabulary of visual concepts and caption
words; `render` holds the shared primitives (video plans, captions, ffmpeg rendering, writing a
set's files); `howto_youcook`, `msrvtt`, `msvd` and `didemo` each plan one format on top of it;
`sets` renders every set a config asks for (`fineco synth`). Per-format modules import `render`,
never the other way.
"""
