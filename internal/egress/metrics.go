package egress

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the proxy's Prometheus series:
//
//	rdev_egress_requests_total{kind="connect|http|git", outcome="allowed|refused|failed"}
//	rdev_egress_refused_total{reason_class="loopback|link-local|private|policy|..."}
//	rdev_egress_tunnels_open
//	rdev_egress_refusals_unreported_total
//
// Each request counts once: allowed when carried, refused when judged
// out, failed when admitted but not carried (no address, no answer).
type Metrics struct {
	requests *prometheus.CounterVec
	refusals *prometheus.CounterVec
	tunnels  prometheus.Gauge
	quiet    prometheus.Counter
}

// NewMetrics registers the proxy's series with reg; it panics if they are
// registered already, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdev_egress_requests_total", Help: "Requests to the egress proxy by kind (connect, http, git) and outcome (allowed, refused, failed).",
		}, []string{"kind", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdev_egress_refused_total", Help: "Requests the egress proxy refused, by class of reason (loopback, link-local, private, policy, ...).",
		}, []string{"reason_class"}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdev_egress_tunnels_open", Help: "CONNECT tunnels open through the egress proxy.",
		}),
		quiet: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rdev_egress_refusals_unreported_total", Help: "Refusals not written to the audit log: past a sandbox's audit budget.",
		}),
	}
	reg.MustRegister(m.requests, m.refusals, m.tunnels, m.quiet)
	return m
}

func (m *Metrics) allowed(kind string) {
	if m != nil {
		m.requests.WithLabelValues(kind, "allowed").Inc()
	}
}

func (m *Metrics) failed(kind string) {
	if m != nil {
		m.requests.WithLabelValues(kind, "failed").Inc()
	}
}

func (m *Metrics) refused(kind, class string) {
	if m != nil {
		m.requests.WithLabelValues(kind, "refused").Inc()
		m.refusals.WithLabelValues(class).Inc()
	}
}

func (m *Metrics) tunnelOpened() {
	if m != nil {
		m.tunnels.Inc()
	}
}

func (m *Metrics) tunnelClosed() {
	if m != nil {
		m.tunnels.Dec()
	}
}

func (m *Metrics) unreported() {
	if m != nil {
		m.quiet.Inc()
	}
}
