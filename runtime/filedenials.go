package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/clawrun/clawrun/landlock"
)

// FileDenial is one access the Landlock policy refused, as the kernel's
// audit reported it.
type FileDenial struct {
	Time time.Time `json:"time"`
	// Path is the file refused; Object the kernel's other fields when the
	// denial is not of a path (a TCP port, a signal).
	Path   string `json:"path,omitempty"`
	Object string `json:"object,omitempty"`
	// Access are the rights the policy lacked ("fs.write_file").
	Access []string `json:"access"`
	// Pid, Comm and Exe are the refused process's (host pid namespace);
	// without syscall records, those of the launcher that enforced the
	// layer.
	Pid  int    `json:"pid"`
	Comm string `json:"comm,omitempty"`
	Exe  string `json:"exe,omitempty"`
	// Domain is the kernel's id of the enforced layer.
	Domain string `json:"domain"`
}

// FileDenials is what the kernel reported of a container's Landlock
// denials.
type FileDenials struct {
	Denials []FileDenial
	// NotReported says why the kernel does not report them ("" while it
	// does).
	NotReported string
	// Suppressed and Lost count the audit records of any process that the
	// kernel's printk rate limit, or its full backlog, dropped since the
	// container was created.
	Suppressed, Lost int
	// Unattributed counts the denials since then of layers whose process
	// is unknown (their first record was dropped): they may be this
	// container's.
	Unattributed int
}

// launchesFile lists the host pids of a container's exec'd launchers.
const launchesFile = "clawrun-launches.jsonl"

// launch is one launcher of a container: the process that enforced the
// Landlock layers, which the kernel names as the layers' domain's pid.
type launch struct {
	Pid  int       `json:"pid"`
	Time time.Time `json:"time"`
	// ID is the container's (not stored: the file's directory says it).
	ID string `json:"-"`
}

// recordLaunch appends an exec'd launcher to the container's list; started
// is taken before the process was, so that it bounds its denials.
func recordLaunch(stateDir string, pid int, started time.Time) error {
	data, err := json.Marshal(launch{Pid: pid, Time: started})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, launchesFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// FileDenials returns the Landlock denials of container id that the
// kernel's audit reported, or why it does not report them.
func (r *Runtime) FileDenials(id string) (_ *FileDenials, err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	out := &FileDenials{}
	conf, err := loadConfinement(filepath.Join(r.Root, id))
	if err != nil {
		return nil, err
	}
	if conf == nil || len(conf.Launch.Layers) == 0 {
		out.NotReported = "none: the policy has no filesystem rules"
		return out, nil
	}
	out.NotReported = whyNotReported(landlock.ABI())
	logs, err := readAuditLogs(st.Created)
	if err != nil {
		// The egress decisions are still worth showing.
		out.NotReported = fmt.Sprintf("not read: %v", err)
		return out, nil
	}
	launches, err := r.allLaunches()
	if err != nil {
		return nil, err
	}
	domains := joinDenials(logs.Records)
	out.Denials = attribute(domains, launches, id)
	out.Unattributed = unattributed(domains, launches, st.Created)
	out.Suppressed, out.Lost = logs.Suppressed, logs.Lost
	return out, nil
}

// whyNotReported is "" while the kernel logs the agent's denials.
func whyNotReported(abi int) string {
	if abi < 7 {
		return fmt.Sprintf("not reported: the kernel's Landlock ABI is %d (logging denials needs 7, Linux 6.15)", abi)
	}
	st, err := readAuditStatus()
	switch {
	case err != nil:
		return fmt.Sprintf("not known to be reported: the host's audit status cannot be read: %v", err)
	case st.Enabled == 0:
		return "not reported: the host's audit is off (auditctl -e 1 turns it on)"
	}
	return ""
}

// allLaunches are the launchers of every container under the root: the
// init's (its pid, from create on) and those of exec'd processes.
func (r *Runtime) allLaunches() ([]launch, error) {
	entries, err := os.ReadDir(r.Root)
	if err != nil {
		return nil, err
	}
	var all []launch
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, err := r.load(e.Name())
		if err != nil {
			continue // not a container (or one being deleted)
		}
		st, err := c.State()
		if err != nil {
			continue
		}
		all = append(all, launch{ID: e.Name(), Pid: st.InitProcessPid, Time: st.Created})
		execs, err := readLaunches(filepath.Join(r.Root, e.Name()))
		if err != nil {
			return nil, err
		}
		all = append(all, execs...)
	}
	return all, nil
}

func readLaunches(stateDir string) ([]launch, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, launchesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	id := filepath.Base(stateDir)
	var out []launch
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var l launch
		if json.Unmarshal([]byte(line), &l) == nil && l.Pid > 0 {
			l.ID = id
			out = append(out, l)
		}
	}
	return out, nil
}

// domainDenials are the denials of one Landlock domain (one enforced
// layer) and the process that enforced it.
type domainDenials struct {
	Pid       int // the launcher's, from the domain's "allocated" record
	Comm, Exe string
	// Allocated is when the kernel first reported the domain: its first
	// denial, after the domain was enforced.
	Allocated time.Time
	Denials   []FileDenial
}

// launcherPids are the pids that may be d's launcher, with the time each
// bounds: the domain's own record's, else those of the refused
// processes (the launcher's pid when the launched program itself was
// refused: the same process after exec).
func (d *domainDenials) launcherPids() []launch {
	if !d.Allocated.IsZero() {
		return []launch{{Pid: d.Pid, Time: d.Allocated}}
	}
	var out []launch
	for _, f := range d.Denials {
		if f.Pid > 0 {
			out = append(out, launch{Pid: f.Pid, Time: f.Time})
		}
	}
	return out
}

// joinDenials groups the records into domains. The kernel reports a
// domain's launcher (a 1424 record, status=allocated) once, with its first
// denial (a 1423 record of the same serial); later denials of the domain
// carry only its id. A syscall record of the same serial, when the
// audit's syscall contexts are on, names the refused process itself.
func joinDenials(records []auditRecord) map[string]*domainDenials {
	type eventKey struct {
		serial uint64
		time   time.Time
	}
	events := map[eventKey][]auditRecord{}
	var order []eventKey
	for _, rec := range records {
		k := eventKey{rec.Serial, rec.Time}
		if _, seen := events[k]; !seen {
			order = append(order, k)
		}
		events[k] = append(events[k], rec)
	}
	domains := map[string]*domainDenials{}
	domainOf := func(id string) *domainDenials {
		if domains[id] == nil {
			domains[id] = &domainDenials{}
		}
		return domains[id]
	}
	for _, k := range order {
		var access []auditRecord
		var syscall *auditRecord
		for i, rec := range events[k] {
			switch rec.Type {
			case auditLandlockAccess:
				access = append(access, rec)
			case auditSyscall:
				syscall = &events[k][i]
			case auditLandlockDomain:
				if rec.Fields["status"] == "allocated" {
					d := domainOf(rec.Fields["domain"])
					if d.Allocated.IsZero() {
						d.Pid, _ = strconv.Atoi(rec.Fields["pid"])
						d.Comm, d.Exe, d.Allocated = rec.Fields["comm"], rec.Fields["exe"], rec.Time
					}
				}
			}
		}
		for _, rec := range access {
			d := domainOf(rec.Fields["domain"])
			d.Denials = append(d.Denials, denialOf(rec, syscall))
		}
	}
	return domains
}

func denialOf(rec auditRecord, syscall *auditRecord) FileDenial {
	f := FileDenial{Time: rec.Time, Domain: rec.Fields["domain"], Path: rec.Fields["path"]}
	f.Access = strings.Split(rec.Fields["blockers"], ",")
	if f.Path == "" {
		var other []string
		for k, v := range rec.Fields {
			if k != "domain" && k != "blockers" {
				other = append(other, k+"="+v)
			}
		}
		sort.Strings(other)
		f.Object = strings.Join(other, " ")
	}
	if syscall != nil {
		f.Pid, _ = strconv.Atoi(syscall.Fields["pid"])
		f.Comm, f.Exe = syscall.Fields["comm"], syscall.Fields["exe"]
	}
	return f
}

// attribute returns the denials of container id, oldest first. A domain
// is a container's when the container launched the domain's pid: of the
// launches of that pid (by any container under the root) the last one
// before the domain's first denial, so that a pid reused by a later
// container's launcher goes to that container.
func attribute(domains map[string]*domainDenials, launches []launch, id string) []FileDenial {
	var out []FileDenial
	for _, d := range domains {
		if launcherOf(d, launches) != id {
			continue
		}
		for _, f := range d.Denials {
			if f.Pid == 0 {
				f.Pid, f.Comm, f.Exe = d.Pid, d.Comm, d.Exe
			}
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// unattributed counts the denials since since of the domains no launch
// explains.
func unattributed(domains map[string]*domainDenials, launches []launch, since time.Time) int {
	n := 0
	for _, d := range domains {
		if d.Allocated.IsZero() && launcherOf(d, launches) == "" {
			for _, f := range d.Denials {
				if !f.Time.Before(since.Truncate(time.Millisecond)) {
					n++
				}
			}
		}
	}
	return n
}

// launcherOf is the container that launched one of d's candidate pids
// last before that pid's record, "" for none.
func launcherOf(d *domainDenials, launches []launch) string {
	for _, p := range d.launcherPids() {
		if id := lastLaunch(p, launches); id != "" {
			return id
		}
	}
	return ""
}

// lastLaunch is the container that launched p.Pid last before p.Time.
func lastLaunch(p launch, launches []launch) string {
	var best *launch
	for i, l := range launches {
		// Audit times have millisecond precision.
		if l.Pid != p.Pid || l.Time.Truncate(time.Millisecond).After(p.Time) {
			continue
		}
		if best == nil || l.Time.After(best.Time) {
			best = &launches[i]
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}
