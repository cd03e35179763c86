#!/bin/sh
# Install the station agent from its wheel into /opt/fleet-agent (docs/agent.md).
# Usage: sudo sh install.sh fleet_agent-0.1.0-py3-none-any.whl [WHEEL_DIR]
# WHEEL_DIR: a folder with the dependencies' wheels for an offline install.
set -eu
wheel="$1"
here="$(cd "$(dirname "$0")" && pwd)"
id fleet-agent >/dev/null 2>&1 || useradd --system --home-dir /var/lib/fleet-agent \
    --no-create-home --shell /usr/sbin/nologin fleet-agent
python3 -m venv /opt/fleet-agent
if [ "${2:-}" ]; then
    /opt/fleet-agent/bin/pip install --no-index --find-links "$2" "$wheel"
else
    /opt/fleet-agent/bin/pip install "$wheel"
fi
install -d -m 0700 -o fleet-agent -g fleet-agent /var/lib/fleet-agent
install -d -m 0755 /etc/fleet-agent
[ -e /etc/fleet-agent/agent.env ] || install -m 0600 "$here/agent.env.example" /etc/fleet-agent/agent.env
install -m 0644 "$here/fleet-agent.service" /etc/systemd/system/fleet-agent.service
systemctl daemon-reload
echo "Installed. Next: edit /etc/fleet-agent/agent.env, enrol, then: systemctl enable --now fleet-agent"
