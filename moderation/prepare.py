"""Rebuild the public moderation corpora (`<source>.jsonl`) from git repositories pinned to exact commits.

Each source in `PINS` is read with `git show <commit>:<path>` from a local copy of its repository, found under
one folder as `<owner>+<name>/repo` (a bare snapshot) or `<owner>/<name>` (a plain `git clone`). Output lines are
{"text", "label", "kind", "source"}: stripped, cut to 2,000 characters, deduplicated per file. Samples use fixed
seeds, so the same commits give byte-identical files. davidson_hate_offensive was dropped (noisy tweets).
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from random import Random

from moderation.readings import LABELS


@dataclass(frozen=True, slots=True)
class Pin:
    """One repository a source reads: at which commit, which paths (globs allowed), under what licence."""

    source: str
    repo: str  # GitHub "owner/name"
    commit: str
    paths: tuple[str, ...]
    licence: str


PINS: tuple[Pin, ...] = (
    Pin("awesome_chatgpt_prompts", "f/awesome-chatgpt-prompts", "50a97c072933c93c76cc0714e9dd4c4cf1d80ae7",
        ("prompts.csv",), "CC0-1.0"),  # the newest commit whose prompts.csv our snapshot stores (HEAD's is > 4 MiB)
    Pin("self_instruct", "yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23",
        ("data/seed_tasks.jsonl", "human_eval/user_oriented_instructions.jsonl"), "Apache-2.0"),
    Pin("clinc_oos", "clinc/oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de", ("data/data_full.json",), "CC-BY-3.0"),
    Pin("banking77", "PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b",
        ("banking_data/train.csv", "banking_data/test.csv"), "CC-BY-4.0"),
    Pin("nq_open", "google-research-datasets/natural-questions", "fb26a3073b1fe636c97302890a27b491d6530130",
        ("nq_open/NQ-open.dev.jsonl", "nq_open/NQ-open.efficientqa.dev.1.1.jsonl",
         "nq_open/NQ-open.efficientqa.test.1.1.jsonl"), "CC-BY-SA-3.0 (nq_open/README.md)"),
    Pin("xquad_questions", "deepmind/xquad", "60cac411649156efb6aab9dd4c9cde787a2c0345", ("xquad.*.json",), "CC-BY-SA-4.0"),
    Pin("xquad_contexts", "deepmind/xquad", "60cac411649156efb6aab9dd4c9cde787a2c0345", ("xquad.*.json",), "CC-BY-SA-4.0"),
    Pin("humaneval", "openai/human-eval", "6d43fb980f9fee3c892a914eda09951f772ad10d", ("data/HumanEval.jsonl.gz",), "MIT"),
    Pin("nl2bash", "TellinaTool/nl2bash", "466c5fe873ab08c7cc0112ea1521cc6ad9c20992",
        ("data/bash/all.nl", "data/bash/all.cm"), "MIT (data/bash/LICENSE; the GPL-3.0 code is unused)"),
    Pin("rust_book_pastes", "rust-lang/book", "917544888a55e4da7109bdba8c88c893c0da70f4", ("src/*.md",), "MIT OR Apache-2.0"),
    # The READMEs pasted after the book's chunks, in this order (each draws a random prefix).
    Pin("rust_book_pastes", "openai/human-eval", "6d43fb980f9fee3c892a914eda09951f772ad10d", ("README.md",), "MIT"),
    Pin("rust_book_pastes", "pharmapsychotic/clip-interrogator", "bc07ce62c179d3aab3053a623d96a071101d11cb",
        ("README.md",), "MIT"),
    Pin("rust_book_pastes", "rust-lang/book", "917544888a55e4da7109bdba8c88c893c0da70f4", ("README.md",), "MIT OR Apache-2.0"),
    Pin("rust_book_pastes", "yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23", ("README.md",), "Apache-2.0"),
    Pin("rust_book_pastes", "google-research/parti", "5a657978134374ce28973948331b319adef164bd", ("README.md",), "Apache-2.0"),
    Pin("rust_book_pastes", "cdjkim/audiocaps", "d004db3ea1b01cf4fd0347dd8d27db90cadc8809", ("README.md",), "MIT"),
    Pin("rust_book_pastes", "f/awesome-chatgpt-prompts", "50a97c072933c93c76cc0714e9dd4c4cf1d80ae7", ("README.md",), "CC0-1.0"),
    Pin("rust_book_pastes", "amazon-science/mintaka", "b6146ffb41562803c45df3c028b4cdad8c09dd4d", ("README.md",), "CC-BY-4.0"),
    Pin("rust_book_pastes", "PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b",
        ("README.md",), "CC-BY-4.0"),
    Pin("parti_prompts", "google-research/parti", "5a657978134374ce28973948331b319adef164bd", ("PartiPrompts.tsv",), "Apache-2.0"),
    Pin("t2i_compbench", "Karine-Huang/T2I-CompBench", "1b7094991a57f3c22abdd4f6e8ba6c1a15517073",
        ("examples/dataset/*.txt",), "MIT"),
    Pin("synthetic_image_prompts", "pharmapsychotic/clip-interrogator", "bc07ce62c179d3aab3053a623d96a071101d11cb",
        ("clip_interrogator/data/*.txt",), "MIT"),  # the vocabulary; subjects come from parti and t2i
    Pin("musiccaps", "ChungHaLee/music-lm-retrieval", "86197e1b58114acc3ca831f04d7987971a19d34e",
        ("musiccaps-public.csv",), "no licence file; Google's MusicCaps is CC-BY-SA-4.0"),
    Pin("audiocaps", "cdjkim/audiocaps", "d004db3ea1b01cf4fd0347dd8d27db90cadc8809",
        ("dataset/train.csv", "dataset/val.csv", "dataset/test.csv"), "MIT"),
    Pin("advbench", "ab235/AttnGCG-attack", "6d9f1a4752760bf9dec98fddf111075e194eb71e",
        ("data/advbench/harmful_behaviors.csv",), "MIT (an unmodified copy of llm-attacks' AdvBench, MIT)"),
    Pin("do_not_answer", "kunishou/do-not-answer-ja", "1380ff2ff5abad07e8aead79caa9757bb8d9f866",
        ("datasets/Instruction/do_not_answer_en.csv",), "Apache-2.0"),
    Pin("multijail", "DAMO-NLP-SG/multilingual-safety-for-LLMs", "577ac511437e07a256130945ef312a99158a18ad",
        ("data/MultiJail.csv",), "MIT"),
    Pin("toxigen_prompts", "microsoft/TOXIGEN", "01517e814639e0334c920a3c502036c8158aac87",
        ("prompts/hate_*.txt", "prompts/neutral_*.txt"), "MIT + CDLA-Permissive-2.0"),
    Pin("hatecheck_en", "paul-rottger/hatecheck-data", "d84302298ceeb34f4b0dde2d8a1f4932c2caa612",
        ("test_suite_cases.csv",), "CC-BY-4.0"),
    Pin("hatecheck_multilingual", "rewire-online/multilingual-hatecheck", "a03f2caf2023a402d85064bda243e46d280408f0",
        ("MHC Final Cases/*.csv",), "CC-BY-4.0"),
)

MAX_CHARS = 2000
KINDS = ("chat", "image", "music")

# AdvBench has no categories: the first rule whose pattern occurs in the lower-cased goal gives its label.
KEYWORD_RULES: tuple[tuple[str, str], ...] = (
    ("self_harm", r"suicid|self-harm|self harm|anorexi|bulimi|eating disorder|cut (myself|yourself)"),
    ("sexual", r"child porn|pornograph|sexual|\bporn|groom|explicit content|nude|\bsex\b"),
    ("fake_media", r"deepfake|deep fake|fake (video|image|photo)|doctored"),
    ("voice", r"voice clon|clone (a|someone's|their) voice|voice imperson"),
    ("weapons", r"\bbomb|explosive|weapon|firearm|\bguns?\b|ammunition|grenade|\bnuclear\b"),
    ("cyber", r"hack|malware|virus|ransomware|ddos|exploit|crack(ing)? passwords?|keylogger|botnet|spyware|vulnerabilit"
     r"|unauthorized access|rootkit|trojan|hijack|malicious site|crash a computer|deletes files|denies access|\bworm\b"
     r"|sql injection|bypass security|antivirus"),
    ("fraud", r"fraud|scam|phish|counterfeit|insider trading|launder|identity theft|fake review|ponzi|embezzl|tax evasion"
     r"|evade taxes|credit card|manipulate (stock|financial)|fake (charity|id)|forg(e|ery)|falsif|spam"
     r"|manipulates customer ratings"),
    ("disinfo", r"fake news|misinformation|false information|propaganda|conspiracy|hoax|disinformation|misleading"
     r"|false claims?|without any scientific evidence|misleads the public|fake protest"),
    ("hate", r"hate|racis|discriminat|ethnic|religio|minorit|racial|\brace\b|lgbt|xenophob|antisemit|white supremac"
     r"|oppression|dehumaniz"),
    ("harassment", r"harass|bully|cyberbull|stalk|threat|defam|humiliat|inflammatory|troll|intimidat|blackmail|extort"
     r"|false accusations|reputation"),
    ("privacy", r"privacy|personal data|personal information|track (someone|people|a person)|spy on|surveil|dox"
     r"|location of|private information|tracks user location|spies on|records user activity|harvests|webcam"),
    ("violence", r"\bkill|murder|assault|violen|terror|attack|poison|tortur|\bharm\b|abduct|kidnap|shoot|stab|injur"
     r"|animal cruelty|radicaliz|hit-and-run|abuse and manipulate a child"),
    ("crime", r"drug|steal|theft|\brob\b|robbery|shoplift|smuggl|trespass|illegal|cheat|vandal|crime|criminal|evade"
     r"|break into|pirat|black market|sabotag|pick a lock|escape from a correctional|trafficking|circumvent"),
)

# Do-Not-Answer's `specific_harms` (before the first ":") by label. Harm types left out are dropped: opinion
# questions, unreliable experts, rumours, hazardous or health practices, mental health other than self-harm, and
# organisations' sensitive information carry no clear label. Questions about the bot or asking advice are harmless.
DO_NOT_ANSWER_LABELS: Mapping[str, tuple[str, ...]] = {
    "sexual": ("Explicit Sexual Content", "Sexual Exploitation and Pornography"),
    "violence": ("Graphic Violence", "Violence and Physical Harm", "Terrorist Activities", "Animal Abuse/Cruelty/Poaching"),
    "harassment": ("Threats and Intimidation", "Body Shaming", "Obscene", "Defamatory Content",
                   "Endorsement of Cyberbullying or Online Harassment", "Trolling or Flame baiting"),
    "hate": ("Disability Discrimination", "Gender/Sexual Discrimination", "Location Discrimination",
             "Other Forms of Discrimination", "Racial/Ethnic Discrimination", "Religious Discrimination",
             "Other Severe Toxicity"),
    "self_harm": ("Self-Harm",),
    "none": ("Ask for personal information", "places personal emotional reliance on a chatbot", "Financial Advice",
             "Legal Advice", "Medical Advice"),
    "privacy": ("Biometric Data", "Educational Information", "Financial Information", "Medical Information",
                "Personal Identification Information (PII)", "Personal Life Information",
                "Illegitimate surveillance and censorship", "Malinformation"),
    "crime": ("Copyright Infringement", "Illegal Drugs and Substances", "Illegal Trade", "Substance Abuse"),
    "fraud": ("Financial Crimes", "Spam Content"),
    "cyber": ("Illegal Digital Activities",),
    "disinfo": ("Disinformation",),
}
# Then, in order: (label so far, harm type or "" for any, pattern in the lower-cased question, label if it
# matches, label if not); None means dropped.
DO_NOT_ANSWER_REFINE: tuple[tuple[str | None, str, str, str | None, str | None], ...] = (
    (None, "Guide for Risky Pranks, Unsafe Behaviors, Destructive Behavior, Substance Misuse",
     r"bully|shame|embarrass|humiliat|prank", "harassment", None),
    ("violence", "", r"bomb|explosive|weapon|\bguns?\b|firearm|biochemical", "weapons", "violence"),
    ("fraud", "", r"fake news|misinformation", "disinfo", "fraud"),
    ("privacy", "Malinformation", r"address|phone|private|personal|leak", "privacy", "harassment"),
)

# MultiJail tags -> label: the first of these tags that a prompt carries wins.
MULTIJAIL_TAGS: tuple[tuple[str, str], ...] = (
    ("Self-harm", "self_harm"), ("Child abuse", "sexual"), ("Sexual exploitation & human trafficking", "sexual"),
    ("Adult content", "sexual"), ("Weapons", "weapons"), ("Terrorism & organized crime", "violence"),
    ("Hate speech & offensive language", "hate"), ("Discrimination & injustice", "hate"),
    ("Bullying & harassment", "harassment"), ("Violence & incitement", "violence"), ("Animal abuse", "violence"),
    ("Fraud & deception", "fraud"), ("Soliciting personally identifiable information", "privacy"),
    ("Conspiracy theories & misinformation", "disinfo"), ("Theft", "crime"), ("Property crime & vandalism", "crime"),
    ("Substance abuse & banned substances", "crime"),
)
# From a hand review of all 315 English prompts: benign, borderline or silly ones are dropped, and labels are
# overridden where the tag order picks the wrong one.
MULTIJAIL_DROP = frozenset({
    1, 13, 15, 20, 22, 40, 41, 42, 47, 50, 53, 57, 69, 72, 73, 74, 82, 88, 92, 93, 94, 95, 101, 110, 111, 128, 130, 131,
    133, 134, 137, 140, 142, 143, 146, 150, 152, 153, 158, 164, 171, 178, 180, 181, 182, 184, 190, 192, 193, 198, 202,
    203, 204, 205, 207, 215, 216, 220, 223, 224, 225, 226, 231, 235, 244, 249, 253, 255, 259, 264, 265, 266, 268, 271,
    275, 284, 285, 288, 294, 296, 297, 309,
})
MULTIJAIL_RELABEL: Mapping[str, tuple[int, ...]] = {
    "violence": (35, 44, 46, 65, 66, 70, 75, 89, 119, 154, 191, 260, 270, 274, 292, 293),
    "hate": (2, 23, 28, 116, 129, 238, 239, 286, 311), "crime": (26, 100, 113, 162, 234, 273, 278, 287),
    "harassment": (21, 102, 175, 212, 272, 290, 291), "fraud": (12, 112, 166, 302), "cyber": (96, 127, 241, 251),
    "privacy": (209, 295, 299), "weapons": (18, 301), "sexual": (106,), "disinfo": (314,),
}
MULTIJAIL_PUNCH = re.compile(r"^can i (punch|assault) people in ", re.I)  # one silly template, many countries
MULTIJAIL_LANGS = ("en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv")

HATECHECK_HARASSMENT = frozenset({"target_indiv_nh", "target_group_nh"})  # abuse, but not of a protected group
TOXIGEN_LABELS: Mapping[str, str] = {"prompts/hate_*.txt": "hate", "prompts/neutral_*.txt": "none"}
# Jailbreaks, and prompts that carry their own non-commercial licence.
AWESOME_SKIP = re.compile(r"BY-NC|NonCommercial|non-commercial|\bDAN\b|do anything now|jailbreak", re.I)
# Whether a self-instruct file also gives each bare instruction, besides instruction + first input.
SELF_INSTRUCT_FILES: Mapping[str, bool] = {"data/seed_tasks.jsonl": True, "human_eval/user_oriented_instructions.jsonl": False}
NL2BASH_ASKS = ("How do I {x} in bash?", "bash one-liner to {x}", "{X}", "{X}", "{X}", "linux: {x}", "what's the command to {x}")
NL2BASH_PASTES = (("What does this command do?\n", ""), ("explain: ", ""), ("Why doesn't this work?\n", ""), ("```\n", "\n```"))
PASTE_ASKS = ("", "", "", "Can you summarize this?\n\n", "TL;DR please:\n\n", "Explain this like I'm five:\n\n",
              "Translate this to Spanish:\n\n", "What does this mean?\n\n", "Make this shorter:\n\n")
README_ASKS = ("", "", "Can you help me understand this README?\n\n", "summarize:\n")

# Image-prompt vocabulary that must never reach harmless examples: nudity, gore, hate symbols, minors.
IMAGE_BAD = re.compile(r"nsfw|nud|naked|sexy|erotic|porn|breast|busty|lingerie|boob|gore|blood|corpse|dead|kill|nazi"
                       r"|swastika|gun|weapon|bikini|lewd|hentai|topless|fetish|torture|suicide|drug|sensual|seductive"
                       r"|provocative|butt|thong|underwear|cleavage|nipple|penis|vagina|sex|child|loli|kid|teen|girl|boy|young")
QUALITY_TAGS = ("masterpiece", "best quality", "highly detailed", "ultra detailed", "8k", "4k", "sharp focus",
                "intricate details", "award winning", "trending on artstation", "octane render", "unreal engine 5",
                "cinematic lighting", "volumetric lighting", "studio lighting", "photorealistic", "hyperrealistic",
                "concept art", "matte painting")
# Stable Diffusion emphasis: the first form whose bound a random() draw is under, else the plain text.
SD_EMPHASIS = ((0.25, "({}:{w})"), (0.4, "(({}))"), (0.5, "({})"), (0.55, "[{}]"), (0.6, "{{{{{}}}}}"))
SD_WEIGHTS = ("1.1", "1.2", "1.3", "1.4", "0.8", "0.9", "1.5")
SD_SETTINGS = ((20, 25, 30, 40, 50), ("Euler a", "DPM++ 2M Karras", "DDIM"), (5, 6, 7, 7.5, 9))  # steps, sampler, CFG
MJ_ASPECTS = ("16:9", "9:16", "2:3", "3:2", "4:5", "1:1", "21:9", "3:4")
MJ_VERSIONS = ("5", "5.1", "5.2", "6", "6.1", "7")
# Optional Midjourney flags: (chance, flag, values to pick one from; none for a bare flag).
MJ_FLAGS: tuple[tuple[float, str, Sequence[object]], ...] = (
    (0.3, "--style raw", ()), (0.3, "--stylize", (50, 100, 250, 500, 750, 1000)), (0.15, "--chaos", range(5, 81)),
    (0.1, "--no", ("text", "watermark", "people", "blur", "frame")), (0.1, "--q 2", ()), (0.1, "--seed", range(1, 2**32)),
)


class PrepareError(RuntimeError):
    """A repository, commit or file that a source needs is missing."""


def git_dir(mirror: Path, repo: str) -> Path:
    """The git directory of `repo` ("owner/name") under `mirror`: `<owner>+<name>/repo` or `<owner>/<name>`."""
    owner, name = repo.split("/")
    for place in (mirror / f"{owner}+{name}" / "repo", mirror / owner / name):
        for candidate in (place / ".git", place):  # a clone with a work tree, or a bare one
            if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
                return candidate
    raise PrepareError(f"{repo} is not under {mirror}; run: git clone https://github.com/{repo} {mirror / owner / name}")


class Snapshots:
    """The pinned files of each source, read from the repositories under one folder."""

    def __init__(self, mirror: Path, table: Sequence[Pin] = PINS) -> None:
        self.mirror, self.table = Path(mirror), tuple(table)
        self._dirs: dict[tuple[str, str], Path] = {}  # (repo, commit) -> git dir, once the commit is known there

    def files(self, source: str, declared: str | None = None) -> list[tuple[str, bytes]]:
        """(path, bytes) of every file `source` declares (or only its entry `declared`), in table then git order."""
        found = []
        for pin in (pin for pin in self.table if pin.source == source):
            for entry in (e for e in pin.paths if declared in (None, e)):
                names = self._glob(pin, entry) if any(c in entry for c in "*?[") else [entry]
                found += [(name, self._git(pin, "show", f"{pin.commit}:{name}")) for name in names]
        if not found:
            raise PrepareError(f"{source}: the source table gives no file{f' for {declared}' if declared else ''}")
        return found

    def read(self, source: str, declared: str | None = None) -> bytes:
        """The one file that `source` declares (or its entry `declared`)."""
        if len(found := self.files(source, declared)) != 1:
            raise PrepareError(f"{source}: expected one file, the source table gives {len(found)}")
        return found[0][1]

    def _glob(self, pin: Pin, pattern: str) -> list[str]:
        # "*" stays within one folder, as in a shell; git lists names sorted, as the original scripts read them.
        names = self._git(pin, "ls-tree", "-r", "-z", "--name-only", pin.commit).decode().split("\0")
        return [name for name in names if name.count("/") == pattern.count("/") and fnmatchcase(name, pattern)]

    def locate(self, pin: Pin) -> Path:
        """The git directory that holds `pin`'s commit; a one-line PrepareError naming the fix if there is none."""
        if (key := (pin.repo, pin.commit)) not in self._dirs:
            where = git_dir(self.mirror, pin.repo)
            check = ["git", f"--git-dir={where}", "cat-file", "-e", f"{pin.commit}^{{commit}}"]
            if subprocess.run(check, capture_output=True).returncode:  # e.g. a shallow clone of a newer HEAD
                raise PrepareError(f"{pin.repo} lacks commit {pin.commit}; run: git --git-dir={where} fetch origin {pin.commit}")
            self._dirs[key] = where
        return self._dirs[key]

    def _git(self, pin: Pin, *args: str) -> bytes:
        done = subprocess.run(["git", f"--git-dir={self.locate(pin)}", *args], capture_output=True)
        if done.returncode:
            reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
            raise PrepareError(f"{pin.source}: git {' '.join(args)} in {pin.repo}: {reason}")
        return done.stdout


class Corpus:
    """One output file's rows, stripped, cut to MAX_CHARS and deduplicated as they are added."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[dict[str, str]] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, text: str | None, label: str, kind: str = "chat") -> bool:
        """Keep `text` unless it is missing, empty or already kept (ignoring case and spacing); True if kept."""
        if label not in LABELS or kind not in KINDS:
            raise ValueError(f"{self.source}: bad label {label!r} or kind {kind!r}")
        if text is None or not (text := text.replace("\r\n", "\n").strip()):
            return False
        text = text[:MAX_CHARS].strip()
        if (key := re.sub(r"\s+", " ", text).lower()) in self._seen:
            return False
        self._seen.add(key)
        self.rows.append({"text": text, "label": label, "kind": kind, "source": self.source})
        return True

    def take(self, items: Iterable[tuple[str | None, str]], count: int, kind: str = "chat") -> None:
        """Add (text, label) items until `count` more were kept; rejected ones do not count."""
        goal = len(self.rows) + count
        for text, label in items:
            if len(self.rows) >= goal:
                break
            self.add(text, label, kind)

    def write(self, folder: Path) -> int:
        """Write `<folder>/<source>.jsonl`, one JSON object a line; returns the number of lines."""
        with open(folder / f"{self.source}.jsonl", "w", encoding="utf-8", newline="\n") as file:
            file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)
        return len(self.rows)


def keyword_label(text: str) -> str | None:
    """The label of the first KEYWORD_RULES pattern found in `text`, or None."""
    return next((label for label, pattern in KEYWORD_RULES if re.search(pattern, text.lower())), None)


def _csv(data: bytes, encoding: str = "utf-8", delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(encoding)), delimiter=delimiter))


def _lines(data: bytes) -> list[str]:
    return [line.strip() for line in data.decode().splitlines() if line.strip()]


def _advbench(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("advbench")
    for goal in (row["goal"] for row in _csv(snap.read("advbench"))):
        if label := keyword_label(goal):  # 18 goals match no rule and are left out
            corpus.add(goal, label)
    return [corpus]


def _awesome_chatgpt_prompts(snap: Snapshots) -> list[Corpus]:
    def default(match: re.Match[str]) -> str:  # "${Name:default, other}" -> "default"
        inner = match.group(1)
        return inner.split(":", 1)[1].split(",")[0].strip() if ":" in inner else inner

    corpus = Corpus("awesome_chatgpt_prompts")
    previous = csv.field_size_limit(10**9)  # some prompts outgrow csv's default field limit; restored below
    try:
        rows = _csv(snap.read("awesome_chatgpt_prompts"))
    finally:
        csv.field_size_limit(previous)
    for row in (row for row in rows if not AWESOME_SKIP.search(row["prompt"])):
        corpus.add(re.sub(r"\$\{([^}]*)\}", default, row["prompt"]), "none", "image" if row["type"] == "IMAGE" else "chat")
    return [corpus]


def _self_instruct(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("self_instruct")
    for path, bare_too in SELF_INSTRUCT_FILES.items():
        for task in map(json.loads, snap.read("self_instruct", path).decode().splitlines()):
            for given in (instance.get("input", "") for instance in task.get("instances", [])[:1]):
                corpus.add(task["instruction"] + ("\n\n" + given if given else ""), "none")
            if bare_too:
                corpus.add(task["instruction"], "none")
    return [corpus]


def _intents(snap: Snapshots) -> list[Corpus]:
    rng = Random(21)  # one stream for both: banking77's sample follows clinc's shuffle
    clinc, banking = Corpus("clinc_oos"), Corpus("banking77")
    splits = json.loads(snap.read("clinc_oos"))
    utterances = [pair for split in splits for pair in splits[split]]  # [text, intent] pairs
    rng.shuffle(utterances)
    clinc.take(((text, "none") for text, _ in utterances), 7000)
    queries = [row for _, data in snap.files("banking77") for row in _csv(data)]
    rng.shuffle(queries)
    banking.take(((row["text"], "none") for row in queries), 2500)
    return [clinc, banking]


def _nq_open(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("nq_open")
    for _, data in snap.files("nq_open"):
        for question in (json.loads(line)["question"] for line in data.decode().splitlines()):
            corpus.add(question if question.endswith("?") else question + "?", "none")  # search queries lack "?"
    return [corpus]


def _xquad(snap: Snapshots) -> list[Corpus]:
    rng = Random(5)
    questions, contexts = Corpus("xquad_questions"), Corpus("xquad_contexts")
    for path, data in snap.files("xquad_questions"):  # xquad.<language>.json
        paragraphs = [paragraph for article in json.loads(data)["data"] for paragraph in article["paragraphs"]]
        asked = [qa["question"] for paragraph in paragraphs for qa in paragraph["qas"]]
        pasted = [paragraph["context"] for paragraph in paragraphs]
        rng.shuffle(asked)
        rng.shuffle(pasted)
        for text in asked[:650]:
            questions.add(text, "none")
        for text in pasted[: 240 if PurePosixPath(path).suffixes[0] == ".en" else 15]:  # long pastes: mostly English
            contexts.add(text, "none")
    return [questions, contexts]


def _humaneval(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("humaneval")
    for line in gzip.decompress(snap.read("humaneval")).decode().splitlines():
        corpus.add(json.loads(line)["prompt"], "none")
    return [corpus]


def _nl2bash(snap: Snapshots) -> list[Corpus]:
    rng, corpus = Random(11), Corpus("nl2bash")
    described, commands = (snap.read("nl2bash", f"data/bash/{name}").decode("utf-8", "replace").splitlines()
                           for name in ("all.nl", "all.cm"))
    pairs = list(zip(described, commands))
    rng.shuffle(pairs)
    for description in (d.strip().rstrip(".") for d, _ in pairs[:3000]):  # asking for a command
        if description:
            ask = rng.choice(NL2BASH_ASKS)
            corpus.add(ask.format(x=description[0].lower() + description[1:], X=description), "none")
    for _, command in pairs[3000:3800]:  # pasting one
        before, after = rng.choice(NL2BASH_PASTES)
        corpus.add(before + command.strip() + after, "none")
    return [corpus]


def _rust_book_pastes(snap: Snapshots) -> list[Corpus]:
    rng, corpus, chunks = Random(99), Corpus("rust_book_pastes"), []
    for _, data in snap.files("rust_book_pastes", "src/*.md"):
        page = re.sub(r"\{\{#[^}]*\}\}", "", data.decode("utf-8", "replace"))  # mdBook includes
        page, chunk = re.sub(r"<!--.*?-->", "", page, flags=re.S), ""
        for paragraph in (p.strip() for p in page.split("\n\n") if p.strip()):  # chunks of whole paragraphs
            if len(chunk) + len(paragraph) > 1900 and len(chunk) > 600:
                chunks.append(chunk.strip())
                chunk = ""
            chunk += paragraph + "\n\n"
        if len(chunk) > 600:
            chunks.append(chunk.strip())
    rng.shuffle(chunks)
    for chunk in chunks[:260]:
        corpus.add(rng.choice(PASTE_ASKS) + chunk, "none")
    for _, data in snap.files("rust_book_pastes", "README.md"):
        corpus.add(rng.choice(README_ASKS) + data.decode("utf-8", "replace"), "none")
    return [corpus]


def _image_prompts(snap: Snapshots) -> list[Corpus]:
    rng = Random(42)  # one stream: the synthetic prompts follow the T2I-CompBench shuffle
    parti, t2i, synthetic = Corpus("parti_prompts"), Corpus("t2i_compbench"), Corpus("synthetic_image_prompts")
    parti_texts = [row["Prompt"] for row in _csv(snap.read("parti_prompts"), delimiter="\t")]
    for text in parti_texts:
        parti.add(text, "none", "image")
    compbench = sorted({line for _, data in snap.files("t2i_compbench") for line in _lines(data)})
    rng.shuffle(compbench)
    for text in compbench[:4000]:
        t2i.add(text, "none", "image")
    words = {PurePosixPath(path).stem: [w for w in _lines(data) if not IMAGE_BAD.search(w.lower())]
             for path, data in snap.files("synthetic_image_prompts")}
    artists, mediums, movements, negatives = (words[name] for name in ("artists", "mediums", "movements", "negative"))
    flavors = [flavor for flavor in words["flavors"] if len(flavor) < 60]
    subjects = [s for s in parti_texts + compbench if 10 < len(s) < 200 and not IMAGE_BAD.search(s.lower())]

    def emphasis(text: str) -> str:
        draw = rng.random()
        form = next((form for bound, form in SD_EMPHASIS if draw < bound), "{}")
        return form.format(text, w=rng.choice(SD_WEIGHTS) if "{w}" in form else "")  # only weights draw again

    # Every draw keeps the original script's order: moving one would change every later prompt.
    def stable_diffusion() -> str:
        subject = rng.choice(subjects).rstrip(".")
        parts = [emphasis(rng.choice(QUALITY_TAGS)) for _ in range(rng.randint(1, 3))] + [subject]
        parts += [rng.choice(mediums)] if rng.random() < 0.5 else []
        parts += [emphasis(rng.choice(flavors)) for _ in range(rng.randint(1, 5))]
        parts += ["by " + " and ".join(rng.sample(artists, rng.randint(1, 3)))] if rng.random() < 0.8 else []
        parts += [rng.choice(movements)] if rng.random() < 0.3 else []
        rng.shuffle(parts[:-2])  # shuffles a copy, so the order stands; kept for its draws
        prompt = ", ".join(parts)
        if rng.random() < 0.3:
            prompt += "\nNegative prompt: " + ", ".join(rng.sample(negatives, rng.randint(2, 6)))
        if rng.random() < 0.15:
            steps, sampler, cfg = (rng.choice(values) for values in SD_SETTINGS)
            prompt += f"\nSteps: {steps}, Sampler: {sampler}, CFG scale: {cfg}"
        return prompt

    def midjourney() -> str:
        parts = [rng.choice(subjects).rstrip(".")]
        parts += [rng.choice(mediums)] if rng.random() < 0.5 else []
        parts += ["in the style of " + rng.choice(artists)] if rng.random() < 0.7 else []
        parts += [rng.choice(flavors) for _ in range(rng.randint(0, 4))]
        parts += [rng.choice(QUALITY_TAGS)] if rng.random() < 0.3 else []
        prompt = ", ".join(parts)
        if rng.random() < 0.15:
            prompt = prompt.replace(", ", f"::{rng.choice([1, 2, 3])} ", 1)
        flags = ["--ar " + rng.choice(MJ_ASPECTS)] if rng.random() < 0.8 else []
        if (model := rng.random()) < 0.8:  # one draw picks niji, a version, or neither
            flags.append(f"--niji {rng.choice(['5', '6'])}" if model < 0.15 else f"--v {rng.choice(MJ_VERSIONS)}")
        for chance, flag, values in MJ_FLAGS:
            if rng.random() < chance:
                flags.append(f"{flag} {rng.choice(values)}" if values else flag)
        return ("/imagine prompt: " if rng.random() < 0.3 else "") + prompt + "".join(" " + flag for flag in flags)

    while len(synthetic) < 5000:
        synthetic.add(stable_diffusion() if rng.random() < 0.5 else midjourney(), "none", "image")
    return [parti, t2i, synthetic]


def _music(snap: Snapshots) -> list[Corpus]:
    rng = Random(3)  # one stream: audiocaps' sample follows the musiccaps shuffle
    captions, sounds = Corpus("musiccaps"), Corpus("audiocaps")
    rows = _csv(snap.read("musiccaps"))
    for row in rows:
        captions.add(row["caption"], "none", "music")
    rng.shuffle(rows)
    aspects = (ast.literal_eval(row["aspect_list"]) for row in rows)  # joined, they read like tag prompts
    captions.take(((", ".join(tags), "none") for tags in aspects if len(tags) >= 3), 2500, "music")
    rows = [row for _, data in snap.files("audiocaps") for row in _csv(data)]
    rng.shuffle(rows)
    sounds.take(((row["caption"], "none") for row in rows), 2500, "music")
    return [captions, sounds]


def _do_not_answer(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("do_not_answer")
    for row in _csv(snap.read("do_not_answer")):
        harm, question = row["specific_harms"].split(":")[0].strip(), row["question"]
        label = next((label for label, harms in DO_NOT_ANSWER_LABELS.items() if harm in harms), None)
        for when, harm_type, pattern, matched, unmatched in DO_NOT_ANSWER_REFINE:
            if label == when and harm_type in ("", harm):
                label = matched if re.search(pattern, question.lower()) else unmatched
        if label is not None:
            corpus.add(question, label)
    return [corpus]


def _multijail(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("multijail")
    for row in _csv(snap.read("multijail"), "utf-8-sig"):
        if (prompt := int(row["id"])) in MULTIJAIL_DROP or MULTIJAIL_PUNCH.search(row["en"]):
            continue
        tags = ast.literal_eval(row["tags"])  # a Python list literal
        by_tag = next((label for tag, label in MULTIJAIL_TAGS if tag in tags), None)
        relabelled = next((label for label, prompts in MULTIJAIL_RELABEL.items() if prompt in prompts), None)
        if label := relabelled or by_tag:
            for language in MULTIJAIL_LANGS:  # one prompt in ten languages, one label
                corpus.add(row[language], label)
    return [corpus]


def _toxigen(snap: Snapshots) -> list[Corpus]:
    corpus = Corpus("toxigen_prompts")
    for pattern, label in TOXIGEN_LABELS.items():
        for _, data in snap.files("toxigen_prompts", pattern):
            for line in data.decode("utf-8", "replace").splitlines():
                for statement in (s.strip() for s in line.split("\\n")):  # few-shot lines: "- a\n- b", literal \n
                    statement = statement[1:].strip() if statement.startswith("-") else statement
                    if len(statement) >= 8:
                        corpus.add(statement, label)
    return [corpus]


def _hatecheck_label(row: Mapping[str, str]) -> str:
    if row["label_gold"] == "hateful":
        return "hate"
    return "harassment" if row["functionality"] in HATECHECK_HARASSMENT else "none"


def _hatecheck_en(snap: Snapshots) -> list[Corpus]:
    rng, corpus = Random(7), Corpus("hatecheck_en")
    kept: Counter[str] = Counter()  # rows kept per functionality
    rows = _csv(snap.read("hatecheck_en"))
    rng.shuffle(rows)
    for row in rows:
        if row["label_gold"] == "hateful" and kept[row["functionality"]] >= 60:  # its templates repeat a lot
            continue
        if corpus.add(row["test_case"], _hatecheck_label(row)):
            kept[row["functionality"]] += 1
    return [corpus]


def _hatecheck_multilingual(snap: Snapshots) -> list[Corpus]:
    rng, corpus = Random(13), Corpus("hatecheck_multilingual")
    for _, data in snap.files("hatecheck_multilingual"):  # one file a language
        rows = [row for row in _csv(data, "utf-8-sig") if row.get("disagreement_in_case") != "True"]
        rng.shuffle(rows)
        corpus.take(((row["test_case"], _hatecheck_label(row)) for row in rows), 330)
    return [corpus]


# The files each builder makes; files built together share one random stream, so they are always built together.
BUILDERS: Mapping[tuple[str, ...], Callable[[Snapshots], list[Corpus]]] = {
    ("advbench",): _advbench, ("awesome_chatgpt_prompts",): _awesome_chatgpt_prompts, ("self_instruct",): _self_instruct,
    ("clinc_oos", "banking77"): _intents, ("nq_open",): _nq_open, ("xquad_questions", "xquad_contexts"): _xquad,
    ("humaneval",): _humaneval, ("nl2bash",): _nl2bash, ("rust_book_pastes",): _rust_book_pastes,
    ("parti_prompts", "t2i_compbench", "synthetic_image_prompts"): _image_prompts,
    ("musiccaps", "audiocaps"): _music, ("do_not_answer",): _do_not_answer, ("multijail",): _multijail,
    ("toxigen_prompts",): _toxigen, ("hatecheck_en",): _hatecheck_en, ("hatecheck_multilingual",): _hatecheck_multilingual,
}
SOURCES: tuple[str, ...] = tuple(source for outputs in BUILDERS for source in outputs)


def prepare(mirror: Path, out: Path, only: Sequence[str] = (), table: Sequence[Pin] = PINS) -> dict[str, int]:
    """Write `<out>/<source>.jsonl` for every source (or those in `only`); returns the lines written per source."""
    if unknown := sorted(set(only) - set(SOURCES)):
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    snap = Snapshots(Path(mirror), table)
    written: dict[str, int] = {}
    groups = [(outputs, build) for outputs, build in BUILDERS.items() if not only or set(outputs) & set(only)]
    for pin in (pin for pin in snap.table if any(pin.source in outputs for outputs, _ in groups)):
        snap.locate(pin)  # fail before anything is written when a repository or commit is missing
    Path(out).mkdir(parents=True, exist_ok=True)
    for _, build in groups:  # a whole group is built even for one of its files: they share a random stream
        written |= {corpus.source: corpus.write(Path(out)) for corpus in build(snap) if not only or corpus.source in only}
    return written
