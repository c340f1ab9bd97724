"""METEOR 1.5 through the reference jar (Java), as the COCO caption evaluation runs it.

There is no faithful pure-Python METEOR (its stemmer, WordNet synonyms and paraphrase table live in the
jar), so METEOR is computed only where Java and the jar are present and is otherwise reported as
unavailable (``None``), never as 0. The jar is looked up in this order: the ``jar`` argument, the
``VIOLET_METEOR_JAR`` environment variable, an installed ``pycocoevalcap`` (``meteor/meteor-1.5.jar``,
found without importing it). The jar reads its paraphrase table from ``data/`` beside it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MeteorScorer", "find_java", "find_meteor_jar", "meteor_score"]

log = logging.getLogger(__name__)

JAR_ENV = "VIOLET_METEOR_JAR"


def find_java() -> str | None:
    """Path of a ``java`` executable (``$JAVA_HOME/bin/java`` first, then ``PATH``), or ``None``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def find_meteor_jar(jar: str | os.PathLike | None = None) -> Path | None:
    """The METEOR 1.5 jar: ``jar``, else ``$VIOLET_METEOR_JAR``, else pycocoevalcap's copy; ``None`` if absent.

    Raises:
        FileNotFoundError: ``jar`` (or the environment variable) names a file that does not exist.
    """
    for source, path in (("jar argument", jar), (JAR_ENV, os.environ.get(JAR_ENV))):
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"METEOR jar given by {source} does not exist: {path}")
            return Path(path)
    try:
        spec = importlib.util.find_spec("pycocoevalcap")
    except (ImportError, ValueError):
        spec = None
    for root in getattr(spec, "submodule_search_locations", None) or []:
        candidate = Path(root) / "meteor" / "meteor-1.5.jar"
        if candidate.is_file():
            return candidate
    return None


class MeteorScorer:
    """A running METEOR 1.5 process (``-stdio -l en -norm``, as pycocoevalcap starts it).

    Args:
        jar: The jar; see :func:`find_meteor_jar`.
        java: The Java executable; default :func:`find_java`.
        memory: Java heap (``-Xmx``).

    Raises:
        FileNotFoundError: No Java or no jar.
    """

    def __init__(self, jar: str | None = None, java: str | None = None, memory: str = "2G") -> None:
        java = java or find_java()
        path = find_meteor_jar(jar)
        if java is None or path is None:
            raise FileNotFoundError(f"METEOR needs Java and the METEOR 1.5 jar (java={java}, jar={path})")
        cmd = [java, "-jar", f"-Xmx{memory}", str(path), "-", "-", "-stdio", "-l", "en", "-norm"]
        self.proc = subprocess.Popen(
            cmd, cwd=path.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"METEOR process ended unexpectedly (exit code {self.proc.poll()})")
        return answer.decode().strip()

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus METEOR of tokenised captions (statistics pooled over the corpus, as pycocoevalcap)."""
        if len(predictions) != len(references) or not predictions:
            raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
        stats = []
        for hyp, refs in zip(predictions, references):
            refs = [r.replace("|||", "") for r in refs]
            hyp = hyp.replace("|||", "").replace("  ", " ")
            stats.append(self._ask(" ||| ".join(("SCORE", " ||| ".join(refs), hyp))))
        self._ask("EVAL ||| " + " ||| ".join(stats))  # first answer: the first segment's score
        for _ in range(len(predictions) - 1):
            self.proc.stdout.readline()  # type: ignore[union-attr]
        return float(self.proc.stdout.readline().decode().strip())  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop the Java process."""
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def meteor_score(
    predictions: Sequence[str], references: Sequence[Sequence[str]], jar: str | None = None
) -> float | None:
    """Corpus METEOR 1.5 of tokenised captions, or ``None`` (with a logged warning) without Java or jar.

    Args:
        predictions: One tokenised caption per sample.
        references: The tokenised references of each sample.
        jar: The METEOR 1.5 jar; see :func:`find_meteor_jar`.
    """
    if find_java() is None or find_meteor_jar(jar) is None:
        log.warning(
            "METEOR unavailable: it needs Java and the METEOR 1.5 jar (install pycocoevalcap or set %s)",
            JAR_ENV,
        )
        return None
    with MeteorScorer(jar) as scorer:
        return scorer.score(predictions, references)
