#!/usr/bin/env bash
# Installs what the deploy checks need, idempotently (root, Debian 12):
#   bash scripts/deploy-setup.sh          # validators: yamllint, kubernetes-validate, systemd-analyze
#   bash scripts/deploy-setup.sh --image  # also podman, buildah, runc, debootstrap (container test)
# Not part of scripts/setup.sh: the container tools are heavy and only
# scripts/deploy-test-image.sh needs them.
set -euo pipefail
image=0
[[ "${1:-}" == "--image" ]] && image=1

need_apt=()
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v setpriv >/dev/null || need_apt+=(util-linux)
if ((image)); then
    for t in podman buildah runc debootstrap; do
        command -v "$t" >/dev/null || need_apt+=("$t")
    done
    command -v tcpreplay >/dev/null || need_apt+=(tcpreplay)
    command -v curl >/dev/null || need_apt+=(curl)
fi
if ((${#need_apt[@]})); then
    echo "deploy-setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v yamllint >/dev/null || ! command -v kubernetes-validate >/dev/null; then
    echo "deploy-setup: pip install yamllint kubernetes-validate"
    # Debian's own python3 refuses pip outside a venv (PEP 668); a
    # pyenv or virtualenv python takes it as is.
    python3 -m pip install -q yamllint kubernetes-validate ||
        python3 -m pip install -q --break-system-packages yamllint kubernetes-validate
fi
echo "deploy-setup: ok"
