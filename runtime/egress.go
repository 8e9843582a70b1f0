package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress/credentials"
	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/egress/kernel"
	"github.com/clawrun/clawrun/egress/resolver"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/internal/jsonfile"
	"github.com/clawrun/clawrun/runtime/policy"
)

// Files of the egress filter in a container's state dir.
const (
	egressConfigFile = "egress-filter.json"
	egressRulesFile  = "egress-rules.json"
	egressStatusFile = "egress-status.json"
	egressStatsFile  = "egress-stats.json"
	// egressAppliedFile: the network policy the last policy apply loaded.
	egressAppliedFile = "egress-applied.json"
	egressRecordFile  = "egress.json"
)

// benchUncountedEnv=1 in the environment of create (or run) starts the
// filter without its counters (no egress-stats.json, no metrics for the
// container): only the egress benchmark sets it, to measure what counting
// costs against a filter that does not count.
const benchUncountedEnv = "CLAWRUN_BENCH_UNCOUNTED"

// egressStatsPath is where the filter writes its counts: "" (none) when
// benchUncountedEnv says so.
func egressStatsPath(stateDir string) string {
	if os.Getenv(benchUncountedEnv) == "1" {
		return ""
	}
	return filepath.Join(stateDir, egressStatsFile)
}

// Where the filter listens inside the container's network namespace.
// protocol: tcp endpoints get synthetic addresses from
// resolver.DefaultSyntheticPrefix (never routed anywhere: a connection to
// one is mapped back to its name).
const (
	egressProxyPort = 15001
	egressDNSPort   = 15053
)

// egressSetup is what create needs to start the filter.
type egressSetup struct {
	Rules    *rules.Rules
	Upstream []string
	Allowed  []string
	LogDir   string
	// LogFormat is the config's egress.log_format.
	LogFormat string `json:",omitempty"`
	// NetnsPath is the network namespace the container joins ("": one of
	// its own).
	NetnsPath string `json:",omitempty"`
	// CACert and CAKey are the container's CA when its filter inspects;
	// UpstreamCAFile the config's egress.upstream_ca_file.
	CACert         string `json:",omitempty"`
	CAKey          string `json:",omitempty"`
	UpstreamCAFile string `json:",omitempty"`
	// Credentials are the config's egress.credentials: their sources,
	// never their values.
	Credentials []credentials.Spec `json:",omitempty"`
	// Inference is the config's egress.inference (nil: none).
	Inference *inference.Route `json:",omitempty"`
}

// checkEgressNetwork refuses network policies that could not be enforced:
// a container sharing the host's network namespace, by leaving it out of
// the spec or by joining it by path.
func checkEgressNetwork(spec *specs.Spec) error {
	ns, ok := netNamespace(spec)
	if ok && ns.Path != "" {
		host, err := isRuntimeNetns(ns.Path)
		if err != nil {
			return fmt.Errorf("network_policies: the network namespace it joins: %w", err)
		}
		ok = !host
	}
	if ok {
		return nil
	}
	return errors.New("network_policies: the container shares the host's network namespace, whose traffic clawrun cannot filter: give it a network namespace of its own")
}

// isRuntimeNetns tells whether path names the runtime's own network
// namespace (the host's).
func isRuntimeNetns(path string) (bool, error) {
	var ns, self unix.Stat_t
	if err := unix.Stat(path, &ns); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return false, err
	}
	return ns.Dev == self.Dev && ns.Ino == self.Ino, nil
}

// netNamespace is the spec's network namespace entry; false when the
// container shares the runtime's (the host's).
func netNamespace(spec *specs.Spec) (specs.LinuxNamespace, bool) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				return ns, true
			}
		}
	}
	return specs.LinuxNamespace{}, false
}

// egressFor prepares the filter of a plan with network policies for the
// container of spec.
func egressFor(plan *policy.Plan, cfg *policy.Config, spec *specs.Spec) (*egressSetup, error) {
	compiled, warnings := rules.FromPlan(plan.Network, 1)
	// What the filter cannot enforce it denies: state's warnings say why,
	// as `clawrun policy check` does.
	plan.Warnings = append(plan.Warnings, warnings...)
	upstream, err := egressUpstream(cfg, spec)
	if err != nil {
		return nil, err
	}
	logDir := cfg.Egress.LogDir
	if logDir == "" {
		logDir = policy.DefaultEgressLogDir
	}
	if cfg.Egress.UpstreamCAFile != "" {
		if _, err := filter.UpstreamRoots(cfg.Egress.UpstreamCAFile); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	creds := credentialSpecs(cfg.Egress.Credentials)
	if err := checkCredentialSources(creds); err != nil {
		return nil, err
	}
	ns, _ := netNamespace(spec)
	return &egressSetup{Rules: compiled, Upstream: upstream, Allowed: cfg.Egress.AllowedUpstreamRanges, LogDir: logDir, LogFormat: cfg.Egress.LogFormat, NetnsPath: ns.Path,
		UpstreamCAFile: cfg.Egress.UpstreamCAFile, Credentials: creds, Inference: inferenceRoute(cfg.Egress.Inference)}, nil
}

// inferenceRoute is the config's egress.inference as the filter takes it.
func inferenceRoute(in *policy.Inference) *inference.Route {
	if in == nil {
		return nil
	}
	host, port := in.BackendHostPort()
	return &inference.Route{BackendHost: host, BackendPort: port, Credential: in.Credential,
		KeyHeader: in.KeyHeader, KeyPrefix: in.KeyPrefix, Forward: in.ForwardHeaders}
}

// credentialSpecs are the config's credentials as the filter takes them.
func credentialSpecs(in []policy.Credential) []credentials.Spec {
	var out []credentials.Spec
	for _, c := range in {
		sp := credentials.Spec{Name: c.Name, File: c.File, Env: c.Env}
		for _, ep := range c.Endpoints {
			sp.Endpoints = append(sp.Endpoints, credentials.Endpoint{Host: ep.Host, Ports: ep.Ports})
		}
		out = append(out, sp)
	}
	return out
}

// checkCredentialSources refuses, at create, credentials the filter
// could not read: a file that is not root's alone, a variable the
// runtime lacks. The runtime does not read the files' secrets.
func checkCredentialSources(creds []credentials.Spec) error {
	for _, c := range creds {
		if c.File != "" {
			if err := credentials.CheckFile(c.File); err != nil {
				return fmt.Errorf("config: egress.credentials %s: file %w", c.Name, err)
			}
		}
	}
	_, err := credentialEnv(creds)
	return err
}

// credentialEnv is the filter's environment that carries the values of
// the credentials of source env, read from the runtime's own: they go to
// the filter's environment only, never into a file or its argv.
func credentialEnv(creds []credentials.Spec) ([]string, error) {
	var env []string
	for _, c := range creds {
		if c.Env == "" {
			continue
		}
		v, ok := os.LookupEnv(c.Env)
		if !ok {
			return nil, fmt.Errorf("config: egress.credentials %s: the runtime's environment variable %s is not set", c.Name, c.Env)
		}
		env = append(env, filter.CredentialEnv(c.Env)+"="+v)
	}
	return env, nil
}

// egressUpstream picks the filter's upstream resolvers: the config's
// egress.upstream_dns when set (the administrator's choice wins); else, for
// a pod's sandbox, the pod's own resolvers, from the resolv.conf the CRI
// bind-mounts into it (kubelet's DNS config for the pod: with ClusterFirst
// the cluster DNS, so allowed cluster names resolve); else the host's.
func egressUpstream(cfg *policy.Config, spec *specs.Spec) ([]string, error) {
	if len(cfg.Egress.UpstreamDNS) > 0 {
		return cfg.Egress.UpstreamDNS, nil
	}
	if spec.Annotations[annotationCRIContainerType] == criSandbox {
		for _, m := range spec.Mounts {
			if m.Destination == "/etc/resolv.conf" && isBindMount(m) && filepath.IsAbs(m.Source) {
				servers, err := resolvConfServers(m.Source)
				if err != nil {
					return nil, fmt.Errorf("egress: no upstream_dns in the config, and the pod's resolv.conf: %w", err)
				}
				return servers, nil
			}
		}
	}
	servers, err := resolvConfServers("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("egress: no upstream_dns in the config, and %w", err)
	}
	return servers, nil
}

func isBindMount(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// resolvConfServers reads the nameservers of a resolv.conf, as ip:53.
func resolvConfServers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", path)
	}
	return out, nil
}

// egressRecord is kept in the state dir to find and stop the filter. It is
// written before the filter may set anything up (see startEgress).
type egressRecord struct {
	SupervisorPid int    `json:"supervisor_pid"`
	LogFile       string `json:"log_file"`
	// Netns identifies the namespace the filter guards (kernel.NetnsID),
	// NetnsPath is the path the container joined it by ("" when it has one
	// of its own, which goes with the container): where delete removes
	// the rules a filter that was killed left behind.
	Netns     string `json:"netns,omitempty"`
	NetnsPath string `json:"netns_path,omitempty"`
}

// Delete's patience with a filter that does not stop (stopped, stuck)
// before it kills it; a forced delete has less.
const (
	filterStopGrace       = 5 * time.Second
	filterStopGraceForced = time.Second
)

// startEgress starts the filter for the namespace of the container's init
// and waits until its rules and listeners are in place. Whenever this
// process dies (a killed create), the filter is either recorded in the
// state dir, for delete to find and stop, or undoes itself: it is
// recorded before it may start, and it stays only once committed, after
// the namespace's record is written.
func startEgress(setup *egressSetup, stateDir, id string, initPid int) error {
	if err := os.MkdirAll(setup.LogDir, 0o700); err != nil {
		return fmt.Errorf("egress log dir: %w", err)
	}
	nsPath := "/proc/" + strconv.Itoa(initPid) + "/ns/net"
	nsID, err := netnsIDOf(nsPath)
	if err != nil {
		return fmt.Errorf("egress filter: %w", err)
	}
	cfg := filter.Config{
		Netns:          nsPath,
		NsPid:          initPid,
		Container:      id,
		RulesFile:      filepath.Join(stateDir, egressRulesFile),
		LogFile:        filepath.Join(setup.LogDir, id+".egress.jsonl"),
		LogMaxBytes:    16 << 20,
		LogKeep:        3,
		LogFormat:      setup.LogFormat,
		StatusFile:     filepath.Join(stateDir, egressStatusFile),
		StatsFile:      egressStatsPath(stateDir),
		Upstream:       setup.Upstream,
		AllowedRanges:  setup.Allowed,
		SyntheticRange: resolver.DefaultSyntheticPrefix.String(),
		ProxyPort:      egressProxyPort,
		DNSPort:        egressDNSPort,
		CACert:         setup.CACert,
		CAKey:          setup.CAKey,
		UpstreamCAFile: setup.UpstreamCAFile,
		Credentials:    setup.Credentials,
		Inference:      setup.Inference,
	}
	credEnv, err := credentialEnv(setup.Credentials)
	if err != nil {
		return err
	}
	if err := filter.WriteRules(cfg.RulesFile, setup.Rules); err != nil {
		return err
	}
	cfgPath := filepath.Join(stateDir, egressConfigFile)
	if err := jsonfile.Write(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	sup, err := launchSupervisor(cfgPath, credEnv)
	if err != nil {
		return fmt.Errorf("egress filter: %w", err)
	}
	defer sup.close() // before the commit: the order to undo everything
	rec := egressRecord{SupervisorPid: sup.pid, LogFile: cfg.LogFile, Netns: nsID, NetnsPath: setup.NetnsPath}
	if err := writeEgressRecord(stateDir, rec); err != nil {
		return err // it exits without having started
	}
	if err := sup.send(filter.StartMsg); err != nil {
		return fmt.Errorf("egress filter: %w", err)
	}
	if err := sup.awaitReady(10 * time.Second); err != nil {
		_, _ = filter.Stop(sup.pid, 0, cfgPath, 2*time.Second)
		return fmt.Errorf("egress filter: %w", err)
	}
	if err := registerNetns(filepath.Dir(stateDir), nsID, id, setup.Rules); err != nil {
		return err
	}
	return sup.send(filter.CommitMsg)
}

// supervisorLaunch is a filter supervisor just started, and the two pipes
// between it and the runtime (see filter.RuntimeFD).
type supervisorLaunch struct {
	pid    int
	ready  *os.File // its report: "ok" or an error
	toSupv *os.File // the runtime's messages
}

// launchSupervisor starts a detached filter supervisor, which waits for
// filter.StartMsg before it does anything; env is added to its
// environment (credentials' values).
func launchSupervisor(cfgPath string, env []string) (*supervisorLaunch, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyW.Close()
	linkR, linkW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		return nil, err
	}
	defer linkR.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		readyR.Close()
		linkW.Close()
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(filter.Binary(), filter.SupervisorArg, cfgPath)
	cmd.ExtraFiles = []*os.File{readyW, linkR} // filter.ReadyFD, filter.RuntimeFD
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	// Detached: its own session, so that the caller's terminal signals
	// and process group do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	if err := cmd.Start(); err != nil {
		readyR.Close()
		linkW.Close()
		return nil, err
	}
	sup := &supervisorLaunch{pid: cmd.Process.Pid, ready: readyR, toSupv: linkW}
	// Do not wait for it: it outlives this process.
	_ = cmd.Process.Release()
	return sup, nil
}

func (s *supervisorLaunch) send(msg string) error {
	_, err := s.toSupv.WriteString(msg + "\n")
	return err
}

// awaitReady waits for the supervisor's report.
func (s *supervisorLaunch) awaitReady(timeout time.Duration) error {
	msg := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(s.ready).ReadString('\n')
		msg <- strings.TrimSpace(line)
	}()
	select {
	case m := <-msg:
		switch m {
		case "ok":
			return nil
		case "":
			return errors.New("the filter exited before it was ready")
		}
		return errors.New(strings.TrimPrefix(m, "error: "))
	case <-time.After(timeout):
		return fmt.Errorf("not ready within %s", timeout)
	}
}

// close closes the runtime's ends; before the commit, that orders the
// supervisor to undo what it set up and exit.
func (s *supervisorLaunch) close() {
	s.ready.Close()
	s.toSupv.Close()
}

// writeEgressRecord writes the record whole: a reader (delete) never sees
// half of it.
func writeEgressRecord(stateDir string, rec egressRecord) error {
	return jsonfile.Write(filepath.Join(stateDir, egressRecordFile), rec, 0o600)
}

// readEgressRecord returns the record of a container's filter, nil when
// it has none.
func readEgressRecord(stateDir string) (*egressRecord, error) {
	var rec egressRecord
	switch err := jsonfile.Read(filepath.Join(stateDir, egressRecordFile), &rec); {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &rec, nil
}

// filterRunning tells whether the filter recorded in a container's state
// dir runs.
func filterRunning(stateDir string, rec *egressRecord) bool {
	return filter.Running(rec.SupervisorPid, filter.SupervisorArg, filepath.Join(stateDir, egressConfigFile))
}

// checkEgressRunning refuses to start a container whose own egress filter
// is not running: its create was cut short (killed) before the filter was
// in place, or the filter was killed since.
func checkEgressRunning(stateDir string, conf *confinement) error {
	if conf.Egress == nil {
		return nil
	}
	rec, err := readEgressRecord(stateDir)
	if err != nil {
		return err
	}
	if rec == nil || !filterRunning(stateDir, rec) {
		return errors.New("network_policies: the container's egress filter is not running (its create did not complete, or the filter was killed): delete the container")
	}
	return nil
}

// stopEgress stops a container's filter, if it has one, before its state
// dir goes (the filter writes its status there); one that does not stop
// within grace is killed. While the container's processes run, the
// filter's rules stay: nothing they send goes out unfiltered. It returns
// what to do once they are gone: remove the rules the filter left in a
// namespace the container joined, if nobody uses it. An unreadable record
// is reported, and never keeps a container from being deleted.
func stopEgress(stateDir string, grace time.Duration) (afterDestroy func() error, err error) {
	root, owner := filepath.Dir(stateDir), filepath.Base(stateDir)
	afterDestroy = func() error { return nil }
	unregisterNetns(root, owner)
	rec, err := readEgressRecord(stateDir)
	if err != nil || rec == nil {
		return afterDestroy, err
	}
	worker := 0
	if st, err := filter.ReadStatus(filepath.Join(stateDir, egressStatusFile)); err == nil {
		worker = st.Worker
	}
	killed, err := filter.Stop(rec.SupervisorPid, worker, filepath.Join(stateDir, egressConfigFile), grace)
	if killed {
		logrus.Warnf("egress supervisor %d did not stop within %s: killed", rec.SupervisorPid, grace)
	}
	return func() error { return removeLeftRules(root, owner, rec) }, err
}

// removeLeftRules removes clawrun's table from the namespace a container
// joined by path when its filter did not (it stopped while the
// container's processes were there, or was killed) and nobody uses the
// namespace now.
// The rules of a namespace of the container's own go with it.
func removeLeftRules(root, owner string, rec *egressRecord) error {
	if rec.NetnsPath == "" || rec.Netns == "" {
		return nil
	}
	ns, err := os.Open(rec.NetnsPath)
	if err != nil {
		return nil // gone with its rules
	}
	defer ns.Close()
	fd := int(ns.Fd())
	if id, err := kernel.NetnsID(fd); err != nil || id != rec.Netns {
		return nil // the name is another namespace's now
	}
	if other, _ := readNetnsRecord(root, rec.Netns); other != nil && other.Owner != owner {
		return nil // another container's filter guards it now
	}
	users, err := kernel.NamespaceUsers(fd)
	if err != nil || len(users) > 0 {
		return err // its rules keep them in, as the filter's stop does
	}
	if installed, _ := kernel.RulesInstalled(fd); !installed {
		return nil
	}
	return kernel.RemoveRules(fd)
}

// egressState describes the filter for `state`.
func egressState(stateDir string) string {
	st, err := filter.ReadStatus(filepath.Join(stateDir, egressStatusFile))
	if err != nil {
		return "pending"
	}
	if filterDown(st) {
		// Killed (SIGKILL, OOM) before it could say so: its worker died
		// with it, its rules stay, nothing gets out.
		return fmt.Sprintf("down: the filter's supervisor (pid %d) is gone: nothing gets out", st.Supervisor)
	}
	switch st.State {
	case filter.StateRunning:
		if st.Generation == 0 {
			return "starting: the filter's worker has not loaded its rules yet"
		}
		// The generation the worker reported loading: what is enforced.
		s := fmt.Sprintf("filtering (generation %d)", st.Generation)
		if st.LogFailure != nil {
			s += "; decisions are not being recorded since " + describeFailure(st.LogFailure)
		}
		if st.LastFailure != nil {
			s += "; last failure " + describeFailure(st.LastFailure)
		}
		return s
	case filter.StateRestarting:
		return "down, restarting: nothing gets out meanwhile (" + st.Error + ")"
	case filter.StateFailed:
		return "failed: nothing gets out (" + st.Error + ")"
	}
	return string(st.State)
}

// filterDown tells whether a filter whose status says it runs has lost
// its supervisor (killed, before it could say so).
func filterDown(st *filter.Status) bool {
	return (st.State == filter.StateRunning || st.State == filter.StateRestarting) && !filter.IsSupervisor(st.Supervisor)
}

// describeFailure is a filter failure as state and audit show it.
func describeFailure(f *filter.Failure) string {
	s := f.Time.Local().Format(time.RFC3339) + ": "
	if f.Generation > 0 {
		s += fmt.Sprintf("generation %d refused: ", f.Generation)
	}
	return s + f.Message
}

// sharedEgressState describes the filter of another container (owner,
// state dir ownerDir) that decides this container's traffic: its pod's
// sandbox's, or that of the container whose namespace it joined.
func sharedEgressState(ownerDir, owner string, inPod bool) string {
	whose := "container " + owner
	if inPod {
		whose = "the pod's sandbox " + owner
	}
	if _, err := os.Stat(filepath.Join(ownerDir, egressStatusFile)); err != nil {
		return "down: " + whose + " and its filter are gone: nothing gets out"
	}
	if inPod {
		return egressState(ownerDir) + ", the pod's filter (sandbox " + owner + ")"
	}
	return egressState(ownerDir) + ", shared: the filter of container " + owner
}
