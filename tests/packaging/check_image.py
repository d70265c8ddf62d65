#!/usr/bin/env python3
"""Checks that the container image would start, without a container engine
(none runs here): installs the build into a staging prefix as the
Dockerfile's build stage does, finds every shared library the installed
binary and plugins need directly (readelf NEEDED, resolved by ldd), maps
each to its Debian package (dpkg -S), and fails unless the Dockerfile's
runtime stage installs that package (libc6 is in every Debian image). Also:
every path the runtime stage copies exists, the image runs as a non-root
uid and carries OCI labels, and a .dockerignore keeps .git and build trees
out of the build context.

usage: check_image.py SOURCE_DIR BUILD_DIR [DOCKERFILE]
Exit 0 when the image is complete; 1 with one line per problem.
(Why: the runtime stage lacked libcpp-httplib0.11, which the binary links,
so the container exited at once with "error while loading shared libraries".)
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

BASE = {"libc6"}  # Essential: in every Debian image, slim included


def stages(dockerfile):
    """The Dockerfile's stages as lists of instructions (continuations joined)."""
    text = open(dockerfile).read()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"(?i)FROM\s", line):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def apt_packages(stage):
    pkgs = set()
    for ins in stage:
        if not re.match(r"(?i)RUN\s", ins):
            continue
        for cmd in re.split(r"&&|;", ins[3:]):
            words = shlex.split(cmd.strip()) if cmd.strip() else []
            if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
                pkgs.update(w for w in words[words.index("install") + 1:] if not w.startswith("-"))
    return pkgs


def needed_libraries(elf):
    """{soname: path} of the libraries `elf` links directly."""
    names = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                       subprocess.run(["readelf", "-d", elf], capture_output=True, text=True, check=True).stdout)
    paths = {}
    for line in subprocess.run(["ldd", elf], capture_output=True, text=True).stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            paths[m.group(1)] = m.group(2)
        m = re.match(r"\s*(/\S+) \(", line)
        if m:
            paths[os.path.basename(m.group(1))] = m.group(1)
    return {n: paths.get(n) for n in names}


def package_of(path):
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):  # merged /usr: dpkg may know either spelling
        if p.startswith("/lib"):
            candidates.append("/usr" + p)
        elif p.startswith("/usr/lib"):
            candidates.append(p[len("/usr"):])
    for p in candidates:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    source, build = sys.argv[1], sys.argv[2]
    dockerfile = sys.argv[3] if len(sys.argv) > 3 else os.path.join(source, "Dockerfile")
    problems = []
    st = stages(dockerfile)
    if len(st) < 2:
        sys.exit("check_image: %s: expected a build stage and a runtime stage" % dockerfile)
    runtime = st[-1]
    installed = apt_packages(runtime) | BASE
    with tempfile.TemporaryDirectory(prefix="kubetrail-image-") as staging:
        subprocess.run(["cmake", "--install", build, "--prefix", "/usr"], env=dict(os.environ, DESTDIR=staging),
                       check=True, capture_output=True)
        elves = [os.path.join(staging, "usr/bin/kubetrail")]
        plugdir = os.path.join(staging, "usr/lib/kubetrail/plugins")
        elves += sorted(os.path.join(plugdir, f) for f in os.listdir(plugdir) if f.endswith(".so"))
        for elf in elves:
            for soname, path in needed_libraries(elf).items():
                if not path:
                    problems.append("%s needs %s, which ldd cannot find here" % (os.path.relpath(elf, staging), soname))
                    continue
                pkg = package_of(path)
                if pkg is None:
                    problems.append("%s needs %s (%s), which no Debian package owns" %
                                    (os.path.relpath(elf, staging), soname, path))
                elif pkg not in installed:
                    problems.append("%s needs %s from package %s, which the runtime stage does not install" %
                                    (os.path.relpath(elf, staging), soname, pkg))
        # What the runtime stage copies must exist.
        for ins in runtime:
            m = re.match(r"(?i)COPY\s+(--from=\S+\s+)?(\S+)\s+(\S+)$", ins)
            if not m:
                continue
            src = m.group(2)
            if m.group(1):  # from the build stage: its /staging is our staging prefix
                where = os.path.join(staging, os.path.relpath(src, "/staging")) if src.startswith("/staging") else None
            else:
                where = os.path.join(source, src)
            if where is None or not os.path.exists(where):
                problems.append("runtime stage copies %s, which the build does not produce" % src)
    user = [ins.split(None, 1)[1] for ins in runtime if re.match(r"(?i)USER\s", ins)]
    if not user or user[-1].split(":")[0] in ("0", "root"):
        problems.append("the image does not run as a non-root user (USER with a non-zero uid)")
    labels = " ".join(ins for ins in runtime if re.match(r"(?i)LABEL\s", ins))
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.description",
                "org.opencontainers.image.version"):
        if key not in labels:
            problems.append("the runtime stage has no OCI label %s" % key)
    ignore = os.path.join(os.path.dirname(os.path.abspath(dockerfile)), ".dockerignore")
    patterns = open(ignore).read().split() if os.path.exists(ignore) else []
    for must in (".git", "build*"):
        if must not in patterns:
            problems.append("%s does not exclude %s from the build context" % (ignore, must))
    for p in problems:
        print("check_image: %s: %s" % (dockerfile, p))
    if problems:
        sys.exit(1)
    print("check_image: %s: %d binaries' libraries all installed by the runtime stage (%s)" %
          (dockerfile, len(elves), ", ".join(sorted(installed))))


if __name__ == "__main__":
    main()
