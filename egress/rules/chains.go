package rules

import "strings"

// chainEnd ends each process's chain in a list of several (JoinChains):
// never an executable, which is an absolute path.
const chainEnd = ""

// JoinChains lists the executable chains of the processes that hold one
// connection (each: the process's executable, then its ancestors') as
// the one list the Match functions take. A list without chainEnd is one
// process's chain.
func JoinChains(chains ...[]string) []string {
	var out []string
	for i, c := range chains {
		if i > 0 {
			out = append(out, chainEnd)
		}
		out = append(out, c...)
	}
	return out
}

// processChains splits a list made by JoinChains; empty chains are kept
// (a process whose executable is unknown matches nothing).
func processChains(exes []string) [][]string {
	if len(exes) == 0 {
		return nil
	}
	var out [][]string
	start := 0
	for i, x := range exes {
		if x == chainEnd {
			out = append(out, exes[start:i])
			start = i + 1
		}
	}
	return append(out, exes[start:])
}

// refusedProcess reports whether a binary-restricted policy refuses the
// processes of exes: when none is known, or when some process's chain
// has no executable matching the globs; *refused then names that
// process's executable.
func refusedProcess(patterns, exes []string, refused *string) bool {
	chains := processChains(exes)
	if len(chains) == 0 {
		return true
	}
	for _, chain := range chains {
		if !chainMatches(patterns, chain) {
			if len(chain) > 0 {
				*refused = chain[0]
			}
			return true
		}
	}
	return false
}

// chainMatches reports whether an executable of one process's chain
// matches one of the globs.
func chainMatches(patterns, chain []string) bool {
	for _, exe := range chain {
		if !strings.HasPrefix(exe, "/") {
			continue
		}
		for _, pat := range patterns {
			if globMatch(pat, exe) {
				return true
			}
		}
	}
	return false
}

// HasBinaries reports whether any policy restricts endpoints to binaries.
func (r *Rules) HasBinaries() bool {
	for _, l := range r.Layers {
		for _, p := range l.Policies {
			if len(p.Binaries) > 0 {
				return true
			}
		}
	}
	return false
}
