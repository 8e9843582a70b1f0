package confinespec

import (
	"fmt"
	"io"
	"strconv"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/runtime/policy"
)

// SetsUser tells whether plan picks the process's user.
func SetsUser(plan *policy.Plan) bool {
	return plan.RunAsUser != "" || plan.RunAsGroup != ""
}

// RunAsUser resolves plan's run_as_user/run_as_group for a process that
// runs as current, in the image's passwd and group files (empty readers
// when the image has none: numeric ids still resolve). Root is refused.
func RunAsUser(plan *policy.Plan, current specs.User, passwd, group io.Reader) (*specs.User, error) {
	spec := plan.RunAsUser
	if spec == "" {
		spec = strconv.Itoa(int(current.UID))
	}
	if plan.RunAsGroup != "" {
		spec += ":" + plan.RunAsGroup
	}
	defaults := &user.ExecUser{Uid: int(current.UID), Gid: int(current.GID)}
	eu, err := user.GetExecUser(spec, defaults, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("policy: process.run_as_user/run_as_group %q: %w", spec, err)
	}
	if eu.Uid == 0 || eu.Gid == 0 {
		return nil, fmt.Errorf("policy: process.run_as_user/run_as_group %q resolves to root, which is not allowed", spec)
	}
	u := &specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	for _, g := range eu.Sgids {
		if g != 0 {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	return u, nil
}
