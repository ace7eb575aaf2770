#!/bin/sh
# busybox udhcpc's event script for the simulated phone: on a lease, set the
# address and default route in the phone's namespace and write what the
# DHCP server said to $LEASE_FILE (ip router dns). Never touches the host's
# /etc/resolv.conf.
# udhcpc sets these in the environment:
# shellcheck disable=SC2154
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for r in $router; do
            ip route replace default via "$r" dev "$interface"
            break
        done
        echo "$ip $router $dns" > "$LEASE_FILE"
        ;;
esac
exit 0
