package rdev

import (
	"errors"
	"net"
	"testing"
)

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "2Gi": 2 << 30,
		"1.5GiB": 3 << 29, "100M": 100e6, "100MB": 100e6, "64KiB": 64 << 10} {
		got, err := ParseMemory(in)
		if err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "2XB", "-1", "0", "1e3", "GiB", "9999999TiB"} {
		if _, err := ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) accepted", in)
		}
	}
}

func TestLimitsAndEgressValidate(t *testing.T) {
	base := func() Project {
		p := Project{ID: "p", Name: "P"}
		p.Normalize()
		return p
	}
	for name, c := range map[string]struct {
		l     Limits
		e     Egress
		field string
	}{
		"Defaults":      {},
		"Full":          {l: Limits{Memory: "2GiB", PIDs: 512, CPU: 2}, e: Egress{Mode: EgressAllow, Allow: []string{"proxy.golang.org", "*.npmjs.org", "10.1.2.0/24:5432", "[::1]:80", "1.2.3.4"}}},
		"TinyMemory":    {l: Limits{Memory: "1MiB"}, field: "limits.memory"},
		"BadMemory":     {l: Limits{Memory: "lots"}, field: "limits.memory"},
		"FewPIDs":       {l: Limits{PIDs: 3}, field: "limits.pids"},
		"NegativeCPU":   {l: Limits{CPU: -1}, field: "limits.cpu"},
		"HugeCPU":       {l: Limits{CPU: 5000}, field: "limits.cpu"},
		"UnknownMode":   {e: Egress{Mode: "open"}, field: "egress.mode"},
		"AllowEmpty":    {e: Egress{Mode: EgressAllow}, field: "egress.allow"},
		"ListWithNone":  {e: Egress{Mode: EgressNone, Allow: []string{"a.example"}}, field: "egress.allow"},
		"BadWildcard":   {e: Egress{Mode: EgressAllow, Allow: []string{"a.*.example"}}, field: "egress.allow[0]"},
		"BadPort":       {e: Egress{Mode: EgressAllow, Allow: []string{"ok.example", "a.example:99999"}}, field: "egress.allow[1]"},
		"BadNetwork":    {e: Egress{Mode: EgressAllow, Allow: []string{"10.0.0.0/99"}}, field: "egress.allow[0]"},
		"SpaceInName":   {e: Egress{Mode: EgressAllow, Allow: []string{"a b"}}, field: "egress.allow[0]"},
		"EmptyEntry":    {e: Egress{Mode: EgressAllow, Allow: []string{""}}, field: "egress.allow[0]"},
		"JustWildcard":  {e: Egress{Mode: EgressAllow, Allow: []string{"*"}}, field: "egress.allow[0]"},
		"SchemeNotHost": {e: Egress{Mode: EgressAllow, Allow: []string{"https://x.example"}}, field: "egress.allow[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			p := base()
			p.Limits = c.l
			if c.e.Mode != "" {
				p.Egress = c.e
			}
			err := p.Validate()
			var ie *InvalidError
			switch {
			case c.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.field != "" && (!errors.As(err, &ie) || ie.Field != c.field):
				t.Fatalf("want an error on %s, got %v", c.field, err)
			}
		})
	}
}

func TestEgressRuleMatches(t *testing.T) {
	rule := func(s string) EgressRule {
		r, err := ParseEgressRule(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return r
	}
	hosts := []struct {
		rule, host string
		port       int
		want       bool
	}{
		{"proxy.golang.org", "proxy.golang.org", 443, true},
		{"proxy.golang.org", "evil.proxy.golang.org", 443, false},
		{"proxy.golang.org", "proxy.golang.org.evil", 443, false},
		{"*.npmjs.org", "registry.npmjs.org", 443, true},
		{"*.npmjs.org", "a.b.npmjs.org", 443, true},
		{"*.npmjs.org", "npmjs.org", 443, false},
		{"*.npmjs.org", "evilnpmjs.org", 443, false},
		{"Example.COM.:8080", "example.com", 8080, true},
		{"example.com:8080", "example.com", 443, false},
		{"10.1.2.0/24:5432", "10.1.2.0", 5432, false}, // a network never matches by name
	}
	for _, c := range hosts {
		if got := rule(c.rule).MatchesHost(c.host, c.port); got != c.want {
			t.Errorf("%s admits %s:%d = %v, want %v", c.rule, c.host, c.port, got, c.want)
		}
	}
	ips := []struct {
		rule, ip string
		port     int
		want     bool
	}{
		{"10.1.2.0/24:5432", "10.1.2.7", 5432, true},
		{"10.1.2.0/24:5432", "10.1.2.7", 5433, false},
		{"10.1.2.0/24:5432", "10.1.3.7", 5432, false},
		{"1.2.3.4", "1.2.3.4", 1, true},
		{"[::1]:80", "::1", 80, true},
		{"example.com", "93.184.216.34", 80, false},
	}
	for _, c := range ips {
		if got := rule(c.rule).MatchesIP(net.ParseIP(c.ip), c.port); got != c.want {
			t.Errorf("%s admits %s:%d = %v, want %v", c.rule, c.ip, c.port, got, c.want)
		}
	}
}
