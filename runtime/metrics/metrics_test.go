package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/landlock/launcher"
	"github.com/clawrun/clawrun/runtime"
)

// node is three containers: a pod's sandbox with its filter, a container
// of that pod sharing it, and one without a policy.
func node() []runtime.Observation {
	sandbox := runtime.Observation{
		ID: "sb1", Pod: "agent-0", Namespace: "agents",
		Confinement: &runtime.Confinement{
			Landlock: runtime.LandlockState{Status: launcher.StatusEnforced, ABI: 7},
			Seccomp:  runtime.SeccompState{Profile: "agent"},
			Egress:   "filtering (generation 2)",
		},
		Filter: &runtime.FilterObservation{
			Status: &filter.Status{State: filter.StateRunning, Generation: 2, Restarts: 1},
			Stats: &filter.Stats{
				Time: time.Unix(1700000000, 0),
				Decisions: []filter.DecisionCount{
					{Protocol: "dns", Decision: "allow", Reason: "allowed", Count: 4},
					{Protocol: "dns", Decision: "audit", Reason: "not_allowed", Count: 1},
					{Protocol: "dns", Decision: "deny", Reason: "not_allowed", Count: 3},
					{Protocol: "tls", Decision: "allow", Reason: "allowed", Count: 2},
				},
				BytesOut: 100, BytesIn: 5000, OpenConns: 1,
			},
		},
		Startup: 80 * time.Millisecond,
	}
	member := runtime.Observation{
		ID: "c1", Pod: "agent-0", Namespace: "agents",
		Confinement: &runtime.Confinement{
			Landlock: runtime.LandlockState{Status: launcher.StatusEnforced, ABI: 7},
			Seccomp:  runtime.SeccompState{Profile: "agent"},
			Egress:   "filtering (generation 2), the pod's filter (sandbox sb1)",
		},
		Startup: 3 * time.Second,
	}
	return []runtime.Observation{sandbox, member, {ID: "plain"}}
}

func TestCollectorNodeAndFilter(t *testing.T) {
	c := NewCollector(func() ([]runtime.Observation, error) { return node(), nil })
	want := `
# HELP clawrun_confined_containers Confined containers by what is enforced: Landlock status and ABI, and their egress filter (off, own, shared).
# TYPE clawrun_confined_containers gauge
clawrun_confined_containers{egress="own",landlock="enforced",landlock_abi="7"} 1
clawrun_confined_containers{egress="shared",landlock="enforced",landlock_abi="7"} 1
# HELP clawrun_containers Containers under the runtime's roots, by whether a policy confines them.
# TYPE clawrun_containers gauge
clawrun_containers{confined="false"} 1
clawrun_containers{confined="true"} 2
# HELP clawrun_confined_startup_seconds Start-up time of the confined containers present: from their create (or run) until they were confined and their egress filter up.
# TYPE clawrun_confined_startup_seconds histogram
clawrun_confined_startup_seconds_bucket{le="0.025"} 0
clawrun_confined_startup_seconds_bucket{le="0.05"} 0
clawrun_confined_startup_seconds_bucket{le="0.1"} 1
clawrun_confined_startup_seconds_bucket{le="0.25"} 1
clawrun_confined_startup_seconds_bucket{le="0.5"} 1
clawrun_confined_startup_seconds_bucket{le="1"} 1
clawrun_confined_startup_seconds_bucket{le="2.5"} 1
clawrun_confined_startup_seconds_bucket{le="5"} 2
clawrun_confined_startup_seconds_bucket{le="10"} 2
clawrun_confined_startup_seconds_bucket{le="+Inf"} 2
clawrun_confined_startup_seconds_sum 3.08
clawrun_confined_startup_seconds_count 2
# HELP clawrun_egress_decisions_total Egress decisions of a container's filter by protocol (dns, tls, http, https, tcp), decision (allow, deny, audit) and reason.
# TYPE clawrun_egress_decisions_total counter
clawrun_egress_decisions_total{container_id="sb1",decision="allow",namespace="agents",pod="agent-0",protocol="dns",reason="allowed"} 4
clawrun_egress_decisions_total{container_id="sb1",decision="audit",namespace="agents",pod="agent-0",protocol="dns",reason="not_allowed"} 1
clawrun_egress_decisions_total{container_id="sb1",decision="deny",namespace="agents",pod="agent-0",protocol="dns",reason="not_allowed"} 3
clawrun_egress_decisions_total{container_id="sb1",decision="allow",namespace="agents",pod="agent-0",protocol="tls",reason="allowed"} 2
# HELP clawrun_egress_dns_answers_total DNS queries the filter's resolver answered (allowed, or allowed in audit mode).
# TYPE clawrun_egress_dns_answers_total counter
clawrun_egress_dns_answers_total{container_id="sb1",namespace="agents",pod="agent-0"} 5
# HELP clawrun_egress_dns_denials_total DNS queries the filter's resolver denied.
# TYPE clawrun_egress_dns_denials_total counter
clawrun_egress_dns_denials_total{container_id="sb1",namespace="agents",pod="agent-0"} 3
# HELP clawrun_egress_bytes_total Bytes the filter's proxy carried, up (to the upstream) and down (to the container), counted when each connection closes.
# TYPE clawrun_egress_bytes_total counter
clawrun_egress_bytes_total{container_id="sb1",direction="down",namespace="agents",pod="agent-0"} 5000
clawrun_egress_bytes_total{container_id="sb1",direction="up",namespace="agents",pod="agent-0"} 100
# HELP clawrun_egress_open_connections Connections open through the filter's proxy, decided or not.
# TYPE clawrun_egress_open_connections gauge
clawrun_egress_open_connections{container_id="sb1",namespace="agents",pod="agent-0"} 1
# HELP clawrun_egress_filter_restarts_total Times the filter's worker died and was restarted.
# TYPE clawrun_egress_filter_restarts_total counter
clawrun_egress_filter_restarts_total{container_id="sb1",namespace="agents",pod="agent-0"} 1
# HELP clawrun_egress_policy_generation The generation of network policy the filter's worker enforces (it grows with each hot reload).
# TYPE clawrun_egress_policy_generation gauge
clawrun_egress_policy_generation{container_id="sb1",namespace="agents",pod="agent-0"} 2
`
	names := []string{"clawrun_confined_containers", "clawrun_containers", "clawrun_confined_startup_seconds",
		"clawrun_egress_decisions_total", "clawrun_egress_dns_answers_total", "clawrun_egress_dns_denials_total",
		"clawrun_egress_bytes_total", "clawrun_egress_open_connections", "clawrun_egress_filter_restarts_total",
		"clawrun_egress_policy_generation"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// The filter's state is one series per state, 1 for the current one; a
// filter whose supervisor is gone is down, whatever its file says.
func TestCollectorFilterState(t *testing.T) {
	for _, tc := range []struct {
		status *filter.Status
		down   bool
		want   string
	}{
		{&filter.Status{State: filter.StateRunning}, false, "running"},
		{&filter.Status{State: filter.StateRunning}, true, "down"},
		{&filter.Status{State: filter.StateFailed}, false, "failed"},
	} {
		o := runtime.Observation{ID: "x", Confinement: &runtime.Confinement{Egress: "-"},
			Filter: &runtime.FilterObservation{Status: tc.status, Down: tc.down}}
		c := NewCollector(func() ([]runtime.Observation, error) { return []runtime.Observation{o}, nil })
		var b strings.Builder
		b.WriteString("# HELP clawrun_egress_filter_state 1 for the state the filter is in (starting, running, restarting, failed, stopped, down: its supervisor is gone).\n# TYPE clawrun_egress_filter_state gauge\n")
		for _, s := range filterStates {
			v := "0"
			if s == tc.want {
				v = "1"
			}
			b.WriteString(`clawrun_egress_filter_state{container_id="x",namespace="",pod="",state="` + s + `"} ` + v + "\n")
		}
		if err := testutil.CollectAndCompare(c, strings.NewReader(b.String()), "clawrun_egress_filter_state"); err != nil {
			t.Errorf("%s (down %v): %v", tc.status.State, tc.down, err)
		}
	}
}

// A node whose containers cannot be listed fails the scrape: no metrics
// is not "no containers".
func TestCollectorFailsTheScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(func() ([]runtime.Observation, error) { return nil, errors.New("permission denied") }))
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("gather: %v, want the listing's error", err)
	}
}

// A filter that has not written its counts yet has a state and no counts.
func TestCollectorFilterWithoutStats(t *testing.T) {
	o := runtime.Observation{ID: "x", Confinement: &runtime.Confinement{Egress: "pending"},
		Filter: &runtime.FilterObservation{}}
	c := NewCollector(func() ([]runtime.Observation, error) { return []runtime.Observation{o}, nil })
	if n := testutil.CollectAndCount(c, "clawrun_egress_decisions_total", "clawrun_egress_filter_state"); n != 0 {
		t.Fatalf("%d series for a filter that wrote nothing yet, want 0", n)
	}
}
