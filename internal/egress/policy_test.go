package egress

import (
	"net/netip"
	"testing"

	"rdev.dev/rdev/internal/rdev"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr  string
		reach reach
		class string
	}{
		{"8.8.8.8", reachPublic, ""},
		{"203.0.113.10", reachPublic, ""},
		{"2606:4700::1111", reachPublic, ""},
		{"127.0.0.1", reachNever, ClassLoopback},
		{"127.255.0.9", reachNever, ClassLoopback},
		{"::1", reachNever, ClassLoopback},
		{"::ffff:127.0.0.1", reachNever, ClassLoopback},
		{"::127.0.0.1", reachNever, ClassLoopback}, // IPv4-compatible
		{"::8.8.8.8", reachNever, ClassReserved},   // IPv4-compatible: deprecated, never routed
		{"64:ff9b::127.0.0.1", reachNever, ClassLoopback},
		{"64:ff9b::169.254.169.254", reachNever, ClassLinkLocal},
		{"64:ff9b::10.0.0.1", reachPrivate, ClassPrivate},
		{"64:ff9b::8.8.8.8", reachPublic, ""},
		{"64:ff9b:1::1", reachPrivate, ClassPrivate},
		{"2002:7f00:1::1", reachNever, ClassLoopback}, // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", reachNever, ClassLinkLocal},
		{"0.0.0.0", reachNever, ClassUnspecified},
		{"0.1.2.3", reachNever, ClassUnspecified},
		{"::", reachNever, ClassUnspecified},
		{"169.254.169.254", reachNever, ClassLinkLocal},
		{"::ffff:169.254.169.254", reachNever, ClassLinkLocal},
		{"fe80::1", reachNever, ClassLinkLocal},
		{"fe80::1%eth0", reachNever, ClassLinkLocal},
		{"2001:db8::1%eth0", reachNever, ClassLinkLocal},
		{"224.0.0.1", reachNever, ClassMulticast},
		{"ff02::1", reachNever, ClassLinkLocal},
		{"ff0e::1", reachNever, ClassMulticast},
		{"255.255.255.255", reachNever, ClassBroadcast},
		{"240.0.0.1", reachNever, ClassReserved},
		{"10.0.0.1", reachPrivate, ClassPrivate},
		{"172.16.0.1", reachPrivate, ClassPrivate},
		{"172.31.255.255", reachPrivate, ClassPrivate},
		{"172.32.0.1", reachPublic, ""},
		{"192.168.1.1", reachPrivate, ClassPrivate},
		{"::ffff:192.168.1.1", reachPrivate, ClassPrivate},
		{"100.64.0.1", reachPrivate, ClassPrivate},
		{"100.128.0.1", reachPublic, ""},
		{"198.18.0.1", reachPrivate, ClassPrivate},
		{"198.19.255.255", reachPrivate, ClassPrivate},
		{"fc00::1", reachPrivate, ClassPrivate},
		{"fd12:3456::1", reachPrivate, ClassPrivate},
		{"fec0::1", reachPrivate, ClassPrivate},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			r, class := classify(netip.MustParseAddr(tt.addr))
			if r != tt.reach || class != tt.class {
				t.Errorf("classify(%s) = %d %q, want %d %q", tt.addr, r, class, tt.reach, tt.class)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in       string
		def      uint16
		hostport string // "" when refused
	}{
		{"public.test:443", 0, "public.test:443"},
		{"Public.TEST.:443", 0, "public.test:443"},
		{"public.test", 80, "public.test:80"},
		{"[2001:DB8::1]:443", 0, "[2001:db8::1]:443"},
		{"[2001:db8::1]", 80, "[2001:db8::1]:80"},
		{"[::ffff:10.0.0.1]:80", 0, "[::ffff:10.0.0.1]:80"},
		{"public.test", 0, ""},
		{"public.test:0", 0, ""},
		{"public.test:65536", 0, ""},
		{"public.test:+80", 0, ""},
		{"public.test:http", 0, ""},
		{":443", 0, ""},
		{"bad host:443", 0, ""},
		{"a..b:443", 0, ""},
		{"ünicode.test:443", 0, ""},
		{"2001:db8::1", 80, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, rf := parseTarget(tt.in, tt.def)
			switch {
			case tt.hostport == "" && rf == nil:
				t.Errorf("parseTarget(%q) = %s, want a refusal", tt.in, got.hostport())
			case tt.hostport != "" && rf != nil:
				t.Errorf("parseTarget(%q) refused: %s", tt.in, rf.Reason)
			case tt.hostport != "" && got.hostport() != tt.hostport:
				t.Errorf("parseTarget(%q) = %s, want %s", tt.in, got.hostport(), tt.hostport)
			case rf != nil && rf.Class != ClassInvalid:
				t.Errorf("parseTarget(%q) refused as %s, want %s", tt.in, rf.Class, ClassInvalid)
			}
		})
	}
}

// admitAddr on its own, for the combinations the proxy tests do not reach
// through a name.
func TestAdmitAddr(t *testing.T) {
	tests := []struct {
		name   string
		policy rdev.Egress
		addr   string
		port   uint16
		byName bool
		class  string // "" when admitted
	}{
		{"PublicMode", egress(rdev.EgressPublic), "8.8.8.8", 53, false, ""},
		{"PublicModePrivate", egress(rdev.EgressPublic), "192.168.0.1", 80, true, ClassPrivate},
		{"NoneMode", egress(rdev.EgressNone), "8.8.8.8", 53, true, ClassPolicy},
		{"UnknownMode", egress("open"), "8.8.8.8", 53, true, ClassPolicy},
		{"AllowByName", egress(rdev.EgressAllow, "dns.test"), "8.8.8.8", 53, true, ""},
		{"AllowLiteralUnlisted", egress(rdev.EgressAllow, "dns.test"), "8.8.8.8", 53, false, ClassPolicy},
		{"AllowAddressRule", egress(rdev.EgressAllow, "8.8.8.8"), "8.8.8.8", 53, false, ""},
		{"AllowAddressRuleMapped", egress(rdev.EgressAllow, "10.0.0.0/8"), "::ffff:10.1.1.1", 80, false, ""},
		{"AllowV6Net", egress(rdev.EgressAllow, "[fd00::/8]:5432"), "fd00::5", 5432, false, ""},
		{"AllowV6NetOtherPort", egress(rdev.EgressAllow, "[fd00::/8]:5432"), "fd00::5", 22, false, ClassPrivate},
		{"AllowNetNeverMulticast", egress(rdev.EgressAllow, "224.0.0.0/4"), "224.0.0.251", 5353, false, ClassMulticast},
		{"AllowNetNeverLoopbackV6", egress(rdev.EgressAllow, "::/0"), "::1", 80, false, ClassLoopback},
		{"AllowBadRuleAdmitsNothing", egress(rdev.EgressAllow, "10.0.0.0/33"), "10.0.0.1", 80, false, ClassPrivate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPolicy(tt.policy)
			tg := target{asked: "x", host: "x", port: tt.port}
			rf := p.admitAddr(tg, netip.MustParseAddr(tt.addr), tt.byName)
			switch {
			case tt.class == "" && rf != nil:
				t.Errorf("refused: %s", rf.Reason)
			case tt.class != "" && rf == nil:
				t.Errorf("admitted, want refused as %s", tt.class)
			case rf != nil && rf.Class != tt.class:
				t.Errorf("refused as %s (%s), want %s", rf.Class, rf.Reason, tt.class)
			}
		})
	}
}
