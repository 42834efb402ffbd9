"""The video front end's machinery (DESIGN.md §4): `probe` reads a file's stream facts with
ffprobe, `decoders` turns a video into one-second uint8 clips (ffmpeg pipe or decord, the same
frames either way), and `backbone` loads S3D-G (the public weights, or a calibrated random init)
and embeds clips into L2-normalised `video_embedding` rows. The decode and extract stages, the
report's thumbnails and the benches use them; none of them reads a config file or writes an
artifact.
"""
