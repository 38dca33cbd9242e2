package egress

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"rdev.dev/rdev/internal/rdev"
)

// Refusal classes, the values of Refusal.Class and of the reason_class
// label. The address classes name what the address is; "policy" means the
// project's egress policy does not admit the target; "invalid" a request
// that names no valid target; "git" a request for rdev's git host outside
// the project's own repository.
const (
	ClassLoopback    = "loopback"
	ClassUnspecified = "unspecified"
	ClassLinkLocal   = "link-local"
	ClassMulticast   = "multicast"
	ClassBroadcast   = "broadcast"
	ClassReserved    = "reserved"
	ClassPrivate     = "private"
	ClassPolicy      = "policy"
	ClassInvalid     = "invalid"
	ClassGit         = "git"
)

// reach says how far an address may be reached from a sandbox.
type reach uint8

const (
	reachPublic  reach = iota // in modes public and allow (by name)
	reachPrivate              // only through an address rule of mode allow
	reachNever                // in no mode, whatever the rules say
)

var (
	v4Compatible = netip.MustParsePrefix("::/96")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local   = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	uniqueLocal  = netip.MustParsePrefix("fc00::/7")
	siteLocal    = netip.MustParsePrefix("fec0::/10")

	private4 = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT: the provider's network, not the internet
		netip.MustParsePrefix("198.18.0.0/15"), // benchmarking, used inside some clouds
		netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments, never global
	}
	zeroNet4  = netip.MustParsePrefix("0.0.0.0/8") // Linux connects 0.0.0.0 to the local host
	reserved4 = netip.MustParsePrefix("240.0.0.0/4")
	broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// classify says how far a may be reached and, when not public, the class
// named in a refusal. IPv6 forms that carry an IPv4 address (mapped,
// compatible, NAT64, 6to4) are judged by that address: the kernel or a
// gateway turns them into it.
func classify(a netip.Addr) (reach, string) {
	if a.Zone() != "" {
		// Only link-local addresses need a zone; a zone on any other is a
		// trick to pick an interface.
		return reachNever, ClassLinkLocal
	}
	a = a.Unmap()
	if a.Is4() {
		return classify4(a)
	}
	switch {
	case a.IsUnspecified():
		return reachNever, ClassUnspecified
	case a.IsLoopback():
		return reachNever, ClassLoopback
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return reachNever, ClassLinkLocal
	case a.IsMulticast():
		return reachNever, ClassMulticast
	case v4Compatible.Contains(a):
		// Deprecated and never routed: refused whatever it embeds, under the
		// embedded address's class when that is worse.
		if r, c := classify4(embedded4(a, 12)); r == reachNever {
			return r, c
		}
		return reachNever, ClassReserved
	case nat64.Contains(a):
		return classify4(embedded4(a, 12))
	case nat64Local.Contains(a), uniqueLocal.Contains(a), siteLocal.Contains(a):
		return reachPrivate, ClassPrivate
	case sixToFour.Contains(a):
		return classify4(embedded4(a, 2))
	}
	return reachPublic, ""
}

func classify4(a netip.Addr) (reach, string) {
	switch {
	case zeroNet4.Contains(a):
		return reachNever, ClassUnspecified
	case a.IsLoopback():
		return reachNever, ClassLoopback
	case a.IsLinkLocalUnicast():
		return reachNever, ClassLinkLocal
	case a.IsMulticast():
		return reachNever, ClassMulticast
	case a == broadcast:
		return reachNever, ClassBroadcast
	case reserved4.Contains(a):
		return reachNever, ClassReserved
	}
	for _, p := range private4 {
		if p.Contains(a) {
			return reachPrivate, ClassPrivate
		}
	}
	return reachPublic, ""
}

func embedded4(a netip.Addr, at int) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[at : at+4]))
}

// target is what a sandbox asked to reach, normalised.
type target struct {
	asked string     // host:port as asked, for refusals and logs
	host  string     // lowercase name without trailing dot, or an address
	addr  netip.Addr // valid when host is an address literal
	port  uint16
}

// hostport is the normalised host:port, the key of the forwarding
// transport's connections.
func (t target) hostport() string {
	return net.JoinHostPort(t.host, strconv.Itoa(int(t.port)))
}

// parseTarget reads host:port (or host alone, with defaultPort; 0 means
// the port is required).
func parseTarget(hostport string, defaultPort uint16) (target, *Refusal) {
	t := target{asked: hostport}
	bad := func(why string) (target, *Refusal) {
		return target{}, &Refusal{Target: hostport, Reason: why, Class: ClassInvalid}
	}
	host, portStr, err := net.SplitHostPort(hostport)
	switch {
	case err == nil:
		p, perr := strconv.ParseUint(portStr, 10, 16)
		if perr != nil || p == 0 {
			return bad("the port must be between 1 and 65535")
		}
		t.port = uint16(p)
	case defaultPort != 0 && strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]"):
		host, t.port = hostport[1:len(hostport)-1], defaultPort
	case defaultPort != 0 && !strings.Contains(hostport, ":"):
		host, t.port = hostport, defaultPort
	default:
		return bad("the target must be host:port")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		t.addr, t.host = a, a.String()
		return t, nil
	}
	t.host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !validName(t.host) {
		return bad("not a valid host name")
	}
	return t, nil
}

// validName admits the characters of DNS names only, so that what reaches
// the resolver (and a C resolver's number parsing) is a plain name.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// policy is a sandbox's rdev.Egress, parsed once.
type policy struct {
	mode  string
	names []rdev.EgressRule
	nets  []rdev.EgressRule
}

// newPolicy parses e. An entry that does not parse admits nothing (the
// store validates policies, so that is a bug elsewhere, reported in bad).
func newPolicy(e rdev.Egress) (p policy, bad []string) {
	p.mode = e.Mode
	for _, s := range e.Allow {
		r, err := rdev.ParseEgressRule(s)
		switch {
		case err != nil:
			bad = append(bad, s)
		case r.Net != nil:
			p.nets = append(p.nets, r)
		default:
			p.names = append(p.names, r)
		}
	}
	return p, bad
}

// admitName decides, before any lookup, whether the name t may be
// resolved at all. Refusing here keeps a project in mode none or allow
// from leaking data to a DNS server through the names it asks for.
func (p policy) admitName(t target) *Refusal {
	switch p.mode {
	case rdev.EgressPublic:
		return nil
	case rdev.EgressNone:
		return &Refusal{Target: t.asked, Reason: "egress mode none", Class: ClassPolicy}
	case rdev.EgressAllow:
		for _, r := range p.names {
			if r.MatchesHost(t.host, int(t.port)) {
				return nil
			}
		}
		return &Refusal{Target: t.asked, Reason: "not in the project's allow-list", Class: ClassPolicy}
	}
	return &Refusal{Target: t.asked, Reason: "unknown egress mode " + strconv.Quote(p.mode), Class: ClassPolicy}
}

// admitAddr decides one address of t: t's literal, or one its name
// resolved to after admitName let the name through (byName).
func (p policy) admitAddr(t target, a netip.Addr, byName bool) *Refusal {
	refuse := func(class, reason string) *Refusal {
		return &Refusal{Target: t.asked, Reason: reason, Class: class}
	}
	if p.mode == rdev.EgressNone {
		return refuse(ClassPolicy, "egress mode none")
	}
	r, class := classify(a)
	if r == reachNever {
		return refuse(class, class+" address "+a.String())
	}
	if p.mode == rdev.EgressAllow {
		ip := net.IP(a.Unmap().AsSlice())
		for _, rule := range p.nets {
			if rule.MatchesIP(ip, int(t.port)) {
				return nil
			}
		}
	}
	switch {
	case r == reachPrivate:
		return refuse(class, class+" address "+a.String())
	case p.mode == rdev.EgressPublic:
		return nil
	case p.mode == rdev.EgressAllow && byName:
		return nil
	case p.mode == rdev.EgressAllow:
		return refuse(ClassPolicy, "not in the project's allow-list")
	}
	return refuse(ClassPolicy, "unknown egress mode "+strconv.Quote(p.mode))
}

// admitAll decides every address a name resolved to: one refused address
// refuses the connection, since which of them a client would get is the
// DNS server's choice (a rebinding server answers one good, one bad).
func (p policy) admitAll(t target, addrs []netip.Addr) *Refusal {
	for _, a := range addrs {
		if rf := p.admitAddr(t, a, true); rf != nil {
			return rf
		}
	}
	return nil
}

// NonPublic returns "" when a is a public address, else the class of
// address it is (loopback, link-local, private, …): what the proxy in mode
// public refuses. For checks rdev makes on a user's URL before handing it
// to the proxy, which checks again at every connection.
func NonPublic(a netip.Addr) string {
	if r, class := classify(a); r != reachPublic {
		return class
	}
	return ""
}
