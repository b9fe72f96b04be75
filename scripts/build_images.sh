#!/usr/bin/env bash
# Builds the project's three images (infra/docker/Dockerfile.{gpu,cpu,mlflow}) from the
# repository root, tagged git-<commit> of a clean checkout (or TAG), pushes them when PUSH=1,
# and prints the `danq pipeline compile` line that uses the same tag. The plan (tag, commit,
# Dockerfiles, references) comes from `danq pipeline images`, so tags are computed in one place
# (src/danq/kfp/images.py). Called by `make images REGISTRY=... [TAG=...] [PUSH=1]`.
#
#   REGISTRY  where the images go, e.g. us-docker.pkg.dev/$PROJECT/danq (required)
#   TAG       image tag (default: git-<12 hex> of HEAD; a dirty work tree is refused)
#   PUSH      1: push after building
#   PLATFORM  target platform (default linux/amd64: GKE nodes; the TensorFlow GPU base image
#             exists only for it)
#   BUCKET    fills the printed --pipeline-root gs://$BUCKET/kfp
#
# Base images are pinned by digest: each Dockerfile's FROM <image:tag> is built from the digest
# infra/docker/base-images.lock records for it (a BuildKit named context replaces the tag). A
# tag not recorded yet is resolved with `docker buildx imagetools inspect` and appended, to be
# committed: later builds then start from the same base image, whatever the tag points to.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "error: $*" >&2
  exit 2
}

[[ -n "${REGISTRY:-}" ]] || fail "no REGISTRY: make images REGISTRY=us-docker.pkg.dev/PROJECT/danq [PUSH=1]"
command -v docker >/dev/null || fail "docker not found on PATH: the images are built with Docker"
command -v danq >/dev/null || fail "danq not found on PATH: run from the project's .venv (make images)"

# Refuses (exit 2, with the reason) a dirty tree without TAG, a bad registry or tag.
plan=$(danq pipeline images --registry "$REGISTRY" ${TAG:+--tag "$TAG"})

tag="" revision="" builds=()
while read -r record first rest; do
  case $record in
    tag) tag=$first ;;
    revision) revision=$first ;;
    image) builds+=("$rest") ;;
  esac
done <<<"$plan"

base_lock=infra/docker/base-images.lock

# The digest base-images.lock records for an image reference, recorded first when missing.
base_digest() {
  local image=$1 digest
  if [[ -f "$base_lock" ]]; then
    digest=$(awk -v image="$image" '$1 == image { print $2; exit }' "$base_lock")
    if [[ -n "$digest" ]]; then
      echo "$digest"
      return
    fi
  fi
  digest=$(docker buildx imagetools inspect "$image" </dev/null | awk '$1 == "Digest:" { print $2; exit }')
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "could not resolve the digest of $image"
  [[ -f "$base_lock" ]] || printf '# %s\n' \
    "FROM image -> the digest scripts/build_images.sh builds it from (commit this file)." \
    >"$base_lock"
  echo "$image $digest" >>"$base_lock"
  echo "pinned $image to $digest in $base_lock: commit it" >&2
  echo "$digest"
}

pushed=()
for build in "${builds[@]}"; do
  read -r dockerfile refs <<<"$build"
  read -r -a refs <<<"$refs"
  args=(build --platform "${PLATFORM:-linux/amd64}" -f "$dockerfile")
  [[ -z "$revision" ]] || args+=(--label "org.opencontainers.image.revision=$revision")
  while read -r base; do
    digest=$(base_digest "$base")
    args+=(--build-context "$base=docker-image://$base@$digest"
      --label "org.opencontainers.image.base.name=$base"
      --label "org.opencontainers.image.base.digest=$digest")
  done < <(awk 'toupper($1) == "FROM" { print $2 }' "$dockerfile")
  for ref in "${refs[@]}"; do args+=(-t "$ref"); done
  echo "+ docker ${args[*]} ."
  docker "${args[@]}" .
  if [[ "${PUSH:-}" == 1 ]]; then
    for ref in "${refs[@]}"; do
      echo "+ docker push $ref"
      docker push "$ref"
      pushed+=("$ref")
    done
  fi
done

echo
if [[ "${PUSH:-}" == 1 ]]; then
  echo "pushed: ${pushed[*]}"
else
  echo "built, not pushed: the cluster pulls from $REGISTRY, so push them first (PUSH=1)"
fi
echo "compile the pipeline for the cluster with these images:"
echo "danq pipeline compile --registry $REGISTRY --tag $tag --pipeline-root gs://${BUCKET:-BUCKET}/kfp"
