package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// ShortcutAnnotation is the annotation ParseShortcut reads.
const ShortcutAnnotation = "run.clawrun.egress"

// ShortcutPolicyName is the Name of a policy made by ParseShortcut, and the
// key of its single network policy.
const ShortcutPolicyName = "egress"

var portDigits = lazyRE(`^[1-9][0-9]{0,4}$`)

// ParseShortcut turns the value of the run.clawrun.egress annotation,
// "host[:port],host[:port],..." (port 443 when omitted), into a Policy whose
// only content is one network policy with an endpoint per host. The same
// host may be given with several ports. The policy has no filesystem_policy:
// it confines egress, not files.
func ParseShortcut(value string) (*Policy, error) {
	var errs ErrorList
	fail := func(i int, entry, format string, args ...any) {
		errs = append(errs, Error{Field: fmt.Sprintf("%s[%d]", ShortcutAnnotation, i),
			Reason: fmt.Sprintf("%q: ", truncate(entry)) + fmt.Sprintf(format, args...)})
	}
	if len(value) > maxDocumentBytes {
		return nil, ErrorList{{Field: ShortcutAnnotation, Reason: "the value is too long"}}
	}
	if strings.TrimSpace(value) == "" {
		return nil, ErrorList{{Field: ShortcutAnnotation, Reason: "no hosts; want host[:port],host[:port],..."}}
	}
	var order []string
	ports := map[string][]int{}
	for i, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			fail(i, entry, "empty entry")
			continue
		}
		host, port := entry, 443
		if h, p, found := strings.Cut(entry, ":"); found {
			if strings.Contains(p, ":") || strings.HasPrefix(entry, "[") {
				fail(i, entry, "IP addresses are not allowed as host; use a policy with allowed_ips")
				continue
			}
			n, err := strconv.Atoi(p)
			if err != nil || !portDigits.MatchString(p) || checkPort(int64(n)) != "" {
				fail(i, entry, "port %q is not a number in 1-65535", truncate(p))
				continue
			}
			host, port = h, n
		}
		h, reason := normHost(host)
		if reason != "" {
			fail(i, entry, "%s", reason)
			continue
		}
		if _, seen := ports[h]; !seen {
			order = append(order, h)
		}
		ports[h] = append(ports[h], port)
	}
	if err := errs.asError(); err != nil {
		return nil, err
	}
	np := NetworkPolicy{Name: ShortcutPolicyName}
	for _, h := range order {
		np.Endpoints = append(np.Endpoints, Endpoint{Host: h, Ports: sortedUnique(ports[h])})
	}
	p := newPolicy(ShortcutPolicyName)
	p.HasNetwork = true
	p.NetworkPolicies = map[string]NetworkPolicy{ShortcutPolicyName: np}
	return p, nil
}
