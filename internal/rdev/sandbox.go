package rdev

import (
	"net"
	"strconv"
	"strings"
)

// Limits bound the resources of one sandbox: a project's pod (its
// components and its sessions' commands together) or one review. Zero
// fields take the server's defaults (see docs/security.md).
type Limits struct {
	// Memory is a size such as "2GiB", "512MiB" or a number of bytes.
	Memory string `json:"memory,omitempty"`
	// PIDs bounds the processes (and threads) alive at once.
	PIDs int `json:"pids,omitempty"`
	// CPU is a number of CPUs, fractions allowed ("cpu": 0.5).
	CPU float64 `json:"cpu,omitempty"`
}

// Limit bounds of what a project may ask for.
const (
	MaxLimitPIDs = 1 << 20
	MaxLimitCPU  = 1024
)

// MemoryBytes returns Memory in bytes (0 when unset).
func (l Limits) MemoryBytes() int64 {
	n, _ := ParseMemory(l.Memory)
	return n
}

// ParseMemory reads a size: a number of bytes, optionally followed by
// K, M, G, T (powers of 1000), Ki, Mi, Gi, Ti (powers of 1024), with or
// without a trailing B. "" is 0.
func ParseMemory(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimSuffix(strings.TrimSpace(s), "B")
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult := map[string]float64{"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || f <= 0 || f*mult > 1<<50 {
		return 0, Invalid("limits.memory", "must be a size such as 512MiB or 2GiB, not %q", s)
	}
	return int64(f * mult), nil
}

func (l Limits) validate() error {
	if _, err := ParseMemory(l.Memory); err != nil {
		return err
	}
	if l.Memory != "" && l.MemoryBytes() < 16<<20 {
		return Invalid("limits.memory", "must be at least 16MiB")
	}
	if l.PIDs < 0 || l.PIDs > MaxLimitPIDs {
		return Invalid("limits.pids", "must be between 1 and %d (0: the server's default)", MaxLimitPIDs)
	}
	if l.PIDs != 0 && l.PIDs < 8 {
		return Invalid("limits.pids", "must be at least 8")
	}
	if l.CPU < 0 || l.CPU > MaxLimitCPU {
		return Invalid("limits.cpu", "must be between 0.01 and %d CPUs (0: the server's default)", MaxLimitCPU)
	}
	if l.CPU != 0 && l.CPU < 0.01 {
		return Invalid("limits.cpu", "must be at least 0.01")
	}
	return nil
}

// Egress modes: where a project's code may connect, through rdev's egress
// proxy. rdev's own git host (the project's repository only) is always
// reachable.
const (
	EgressPublic = "public" // any public address; never loopback, link-local or private ranges
	EgressNone   = "none"   // nowhere
	EgressAllow  = "allow"  // only the hosts and networks of Allow
)

// Egress is a project's egress policy.
type Egress struct {
	Mode string `json:"mode"`
	// Allow lists, for mode "allow", host names ("proxy.golang.org"),
	// wildcards of one or more labels ("*.npmjs.org"), addresses or CIDR
	// networks ("10.1.2.0/24"), each optionally with ":port".
	Allow []string `json:"allow,omitempty"`
}

// MaxEgressRules bounds an allow-list.
const MaxEgressRules = 256

func (e Egress) validate() error {
	switch e.Mode {
	case EgressPublic, EgressNone:
		if len(e.Allow) > 0 {
			return Invalid("egress.allow", "is only for mode %q", EgressAllow)
		}
	case EgressAllow:
		if len(e.Allow) == 0 {
			return Invalid("egress.allow", "mode %q needs at least one host or network", EgressAllow)
		}
		if len(e.Allow) > MaxEgressRules {
			return Invalid("egress.allow", "at most %d entries", MaxEgressRules)
		}
		for i, r := range e.Allow {
			if _, err := ParseEgressRule(r); err != nil {
				return Invalid(indexField("egress.allow", i), "%s", err.(*InvalidError).Message)
			}
		}
	default:
		return Invalid("egress.mode", "must be public, none or allow")
	}
	return nil
}

// EgressRule is one parsed entry of an allow-list.
type EgressRule struct {
	// Host is a lowercase name, or a name whose first label is "*"
	// (matching one or more labels); empty when Net is set.
	Host string
	Net  *net.IPNet
	Port int // 0: any port
}

// ParseEgressRule reads "host", "*.domain", "1.2.3.4", "10.0.0.0/8" or
// "[::1]", each with an optional ":port".
func ParseEgressRule(s string) (EgressRule, error) {
	var r EgressRule
	bad := func(why string) (EgressRule, error) {
		return EgressRule{}, Invalid("", "%q: %s", s, why)
	}
	if s == "" || len(s) > 300 || strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return bad("must be a host name, address or network, optionally with :port")
	}
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		port, perr := strconv.Atoi(p)
		if perr != nil || port < 1 || port > 65535 {
			return bad("the port must be between 1 and 65535")
		}
		host, r.Port = h, port
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Count(s, ":") == 1 && !strings.Contains(s, "/") {
		return bad("the port must be between 1 and 65535")
	}
	if strings.Contains(host, "/") {
		_, n, err := net.ParseCIDR(host)
		if err != nil {
			return bad("not a valid network")
		}
		r.Net = n
		return r, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		bits := 32
		if ip.To4() == nil {
			bits = 128
		}
		r.Net = &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
		return r, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	rest := strings.TrimPrefix(name, "*.")
	if rest == "" || strings.Contains(rest, "*") || !isHostName(rest) {
		return bad("not a valid host name (a leading \"*.\" matches any subdomain)")
	}
	r.Host = name
	return r, nil
}

func isHostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
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

// MatchesHost reports whether the rule admits a connection to host (a
// lowercase name without a trailing dot) on port, judged by name.
func (r EgressRule) MatchesHost(host string, port int) bool {
	if r.Host == "" || (r.Port != 0 && r.Port != port) {
		return false
	}
	if suffix, ok := strings.CutPrefix(r.Host, "*."); ok {
		return strings.HasSuffix(host, "."+suffix)
	}
	return host == r.Host
}

// MatchesIP reports whether the rule admits a connection to ip on port,
// judged by address.
func (r EgressRule) MatchesIP(ip net.IP, port int) bool {
	return r.Net != nil && (r.Port == 0 || r.Port == port) && r.Net.Contains(ip)
}
