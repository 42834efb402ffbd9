"""The concept catalogue of the synthetic datasets (pipeline/synth/, DESIGN.md §7).

A concept is a lavfi pattern × a colour tint × a motion; each attribute value carries the synonyms
captions use and the ffmpeg source or filter chain that renders it. Fillers are unrelated seconds
that no caption describes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Attribute:
    """One value of a concept attribute: the synonyms captions use and its ffmpeg filter."""

    words: tuple[str, ...]  # synonyms; every caption of the concept uses one of them
    chain: str  # lavfi source (patterns) or filter chain ("" = none); {w} {h} {fps} {seed}


# A geq pattern drawn on a grey card; sizes are relative to the frame so any resolution works.
_GEQ = "color=c=gray:s={w}x{h}:r={fps},format=yuv444p,geq=lum='{lum}':cb=128:cr=128"

PATTERNS: dict[str, Attribute] = {
    "test-card": Attribute(
        ("test card", "numbered test pattern", "test chart with a counter"),
        "testsrc=s={w}x{h}:r={fps}",
    ),
    "shape-test": Attribute(
        ("test screen with moving shapes", "animated test screen", "test signal with shapes"),
        "testsrc2=s={w}x{h}:r={fps}",
    ),
    "colour-bars": Attribute(
        ("colour bar pattern", "broadcast bar chart", "tv test bar screen"),
        "smptebars=s={w}x{h}:r={fps}",
    ),
    "fractal": Attribute(
        ("fractal", "mandelbrot set", "fractal shape"), "mandelbrot=s={w}x{h}:r={fps}"
    ),
    "life": Attribute(
        ("game of life", "grid of living cells", "cell simulation"),
        "life=s={w}x{h}:r={fps}:seed={seed}:ratio=0.2:mold=10",
    ),
    "automaton": Attribute(
        ("cellular automaton", "automaton triangles", "rule thirty pattern"),
        "cellauto=s={w}x{h}:r={fps}:rule=30:seed={seed}",
    ),
    "rgb-stripes": Attribute(
        ("rgb stripe pattern", "primary colour band pattern", "three colour band screen"),
        "rgbtestsrc=s={w}x{h}:r={fps}",
    ),
    "gradient": Attribute(
        ("gradient", "smooth colour blend", "soft colour wash"),
        # geq, not lavfi `gradients`, which is not deterministic for a seed in ffmpeg 5.1.
        "color=c=black:s={w}x{h}:r={fps},format=gbrp,geq=r='128+100*sin(2*PI*(X/W+T/4)+{seed})'"
        ":g='128+100*sin(2*PI*(Y/H+T/5)+{seed}+2)':b='128+100*sin(2*PI*((X+Y)/(W+H)+T/6)+{seed}+4)'",
    ),
    "checkerboard": Attribute(
        ("checkerboard", "chessboard pattern", "grid of squares"),
        _GEQ.replace("{lum}", "if(mod(floor(X*8/W)+floor(Y*6/H),2),235,16)"),
    ),
    "carpet": Attribute(
        ("sierpinski carpet", "carpet of nested squares", "square fractal carpet"),
        "sierpinski=s={w}x{h}:r={fps}:seed={seed}:type=carpet",
    ),
    "spectrum": Attribute(
        ("rainbow spectrum", "spectrum of colours", "rainbow band"),
        "colorspectrum=s={w}x{h}:r={fps}:type=all",
    ),
    "colour-chart": Attribute(
        ("colour chart", "grid of colour swatches", "colour checker"),
        "colorchart=r={fps}:patch_size=32x32,scale={w}:{h}",
    ),
    "stripes": Attribute(
        ("horizontal stripe pattern", "striped screen", "pattern of stripes"),
        _GEQ.replace("{lum}", "if(mod(floor(Y*10/H),2),235,16)"),
    ),
    "rings": Attribute(
        ("concentric ring pattern", "target of circles", "ripple pattern"),
        _GEQ.replace("{lum}", "128+100*sin(hypot(X-W/2,Y-H/2)*25/W)"),
    ),
}


_Row = tuple[float, float, float]


def _mixer(red: _Row, green: _Row, blue: _Row) -> str:
    """colorchannelmixer mapping (r, g, b) to each output channel."""
    names = [
        f"{out}{src}={value}"
        for out, row in zip("rgb", (red, green, blue), strict=True)
        for src, value in zip("rgb", row, strict=True)
    ]
    return "colorchannelmixer=" + ":".join(names)


_LUMA = (0.4, 0.4, 0.2)
_OFF = (0, 0, 0)
TINTS: dict[str, Attribute] = {
    "natural": Attribute(("colourful", "multicoloured", "vivid"), ""),
    "red": Attribute(("red", "reddish", "crimson"), _mixer(_LUMA, _OFF, _OFF)),
    "green": Attribute(("green", "greenish", "emerald"), _mixer(_OFF, _LUMA, _OFF)),
    "blue": Attribute(("blue", "bluish", "azure"), _mixer(_OFF, _OFF, _LUMA)),
    "yellow": Attribute(("yellow", "yellowish", "golden"), _mixer(_LUMA, _LUMA, _OFF)),
    "purple": Attribute(("purple", "violet", "magenta"), _mixer(_LUMA, _OFF, _LUMA)),
    "grey": Attribute(("grey", "black and white", "monochrome"), "hue=s=0"),
    "inverted": Attribute(("inverted", "negative", "colour inverted"), "negate"),
    "sepia": Attribute(
        ("sepia", "brownish", "old photo coloured"),
        _mixer((0.393, 0.769, 0.189), (0.349, 0.686, 0.168), (0.272, 0.534, 0.131)),
    ),
}

# Motion phrases are gerunds so that "the pattern keeps <motion>" reads well.
MOTIONS: dict[str, Attribute] = {
    "still": Attribute(("standing still", "not moving at all", "holding steady"), ""),
    "sliding": Attribute(
        ("sliding sideways", "scrolling sideways", "moving across"), "scroll=h=0.02"
    ),
    "rolling": Attribute(
        ("scrolling vertically", "rolling vertically", "gliding vertically"), "scroll=v=0.03"
    ),
    "spinning": Attribute(
        ("spinning around", "rotating slowly", "turning in circles"),
        "rotate=a=t*PI/2:fillcolor=black",
    ),
    "zooming": Attribute(
        ("zooming in and out", "growing and shrinking", "moving closer and away"),
        "zoompan=z='1.5+0.5*sin(on/{fps}*PI)':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2'"
        ":d=1:s={w}x{h}:fps={fps}",
    ),
    "flashing": Attribute(
        ("flashing", "blinking", "getting brighter and darker"),
        "eq=brightness='0.3*sin(2*PI*t)':eval=frame",
    ),
    "flipping": Attribute(
        ("flipping back and forth", "mirroring left and right", "flipping sideways"),
        "hflip=enable='lt(mod(t,1),0.5)'",
    ),
}

FILLERS: dict[str, str] = {  # unrelated seconds that no caption describes
    "grey-card": "color=c=gray:s={w}x{h}:r={fps}",
    "noise": "color=c=gray:s={w}x{h}:r={fps},noise=alls=80:allf=t+u:all_seed={seed}",
}


@dataclass(frozen=True)
class Concept:
    pattern: str
    tint: str
    motion: str

    @property
    def name(self) -> str:
        return f"{self.tint}-{self.motion}-{self.pattern}"


# pattern, tint, motion. Natural and inverted tints go only on colourful patterns (a grey life
# grid stays grey); each pattern appears twice with a different tint and motion.
_CATALOG = """
    test-card natural spinning      test-card sepia sliding
    shape-test natural still        shape-test blue flipping
    colour-bars natural zooming     colour-bars inverted rolling
    fractal natural still           fractal green spinning
    life yellow sliding             life red flashing
    automaton green zooming         automaton purple still
    rgb-stripes natural flashing    gradient natural sliding
    gradient inverted spinning      checkerboard red spinning
    checkerboard blue sliding       carpet yellow zooming
    spectrum natural rolling        spectrum grey flipping
    colour-chart sepia still        stripes green rolling
    stripes purple flipping         rings blue zooming
    rings red flashing
"""
_WORDS = _CATALOG.split()
CONCEPTS: dict[str, Concept] = {
    c.name: c for c in (Concept(*_WORDS[i : i + 3]) for i in range(0, len(_WORDS), 3))
}


def all_concepts() -> list[Concept]:
    """Every (pattern, tint, motion) combination, in a fixed order (the long-sparse benchmark's
    vocabulary; `CONCEPTS` is the curated subset the segment-based sets draw from)."""
    return [
        Concept(p, t, m)
        for p, t, m in itertools.product(sorted(PATTERNS), sorted(TINTS), sorted(MOTIONS))
    ]


_BY_NAME: dict[str, Concept] = {c.name: c for c in all_concepts()}


def concept_named(name: str) -> Concept:
    """The concept called `name` (`<tint>-<motion>-<pattern>`), any combination."""
    if name not in _BY_NAME:
        raise KeyError(f"no synthetic concept is called {name!r}")
    return _BY_NAME[name]


ASR_LEADS = ("", "", "so ", "okay ", "and now ", "um ", "alright ", "and then ")
FULL_TEMPLATES = (  # {c} colour, {p} pattern, {m} motion
    "a {c} {p} {m}",
    "you can see the {c} {p} {m}",
    "here we have a {p} in {c} tones {m}",
    "this {c} {p} is {m}",
    "now the screen shows a {c} {p} {m}",
)
PARTIAL_TEMPLATES = (
    "the {p} keeps {m}",
    "look at that {c} {p}",
    "still the same {p} {m}",
    "see how the {p} looks so {c}",
)
