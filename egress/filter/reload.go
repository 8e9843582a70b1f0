package filter

// A new generation of rules reaches a running filter as a proposal: the
// runtime writes it next to the rules file and sends SIGHUP; the worker
// loads it, and only once it has does it become the rules file (what a
// restarted worker loads) and the generation of the Status. A proposal the
// worker refuses is removed, and the Status says why: the rules in force
// never change half-way, and the runtime can tell the user.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/internal/jsonfile"
)

// LoadRules reads a rules file; unknown fields are refused.
func LoadRules(path string) (*rules.Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeRules(path, data)
}

func decodeRules(path string, data []byte) (*rules.Rules, error) {
	var r rules.Rules
	if err := decodeStrict(path, data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// WriteRules writes a rules file atomically (the worker may be reading).
func WriteRules(path string, r *rules.Rules) error { return writeJSONAtomic(path, r) }

// ProposalFile is where a new generation waits for the worker of the
// filter whose rules file is rulesFile.
func ProposalFile(rulesFile string) string { return rulesFile + ".next" }

// ProposeRules writes r as the next generation; the worker loads it on
// SIGHUP.
func ProposeRules(rulesFile string, r *rules.Rules) error {
	return writeJSONAtomic(ProposalFile(rulesFile), r)
}

// withdrawProposal removes a proposal the worker has not taken; false
// when it had (or none was there).
func withdrawProposal(rulesFile string) bool {
	return os.Remove(ProposalFile(rulesFile)) == nil
}

// WaitLoaded waits until the filter has loaded generation gen, proposed
// at since, and returns why not when it will not: it refused it, it is
// down, or it did not within timeout (the proposal is then withdrawn, so
// that it cannot take effect behind the caller's back).
func WaitLoaded(statusFile, rulesFile string, gen int64, since time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := ReadStatus(statusFile)
		if err == nil {
			if done, err := loadOutcome(st, gen, since); done {
				return err
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !withdrawProposal(rulesFile) {
		// Taken meanwhile: its outcome is on its way.
		time.Sleep(100 * time.Millisecond)
		if st, err := ReadStatus(statusFile); err == nil {
			if done, err := loadOutcome(st, gen, since); done {
				return err
			}
		}
	}
	st, err := ReadStatus(statusFile)
	if err != nil {
		return fmt.Errorf("egress filter: generation %d not loaded within %s: %w", gen, timeout, err)
	}
	why := string(st.State)
	if st.Error != "" {
		why += ": " + st.Error
	}
	return fmt.Errorf("egress filter: generation %d not loaded within %s (the filter is %s); generation %d stays", gen, timeout, why, st.Generation)
}

// loadOutcome tells whether st settles the load of generation gen.
func loadOutcome(st *Status, gen int64, since time.Time) (bool, error) {
	if st.Generation >= gen && st.State == StateRunning {
		return true, nil
	}
	if f := st.LastFailure; f != nil && f.Generation == gen && !f.Time.Before(since) {
		return true, fmt.Errorf("egress filter refused generation %d (generation %d stays): %s", gen, st.Generation, f.Message)
	}
	if st.State == StateFailed || st.State == StateStopped {
		return true, fmt.Errorf("egress filter %s: %s", st.State, st.Error)
	}
	return false, nil
}

// proposedGeneration is the generation a refused file names, when that
// much of it can be read.
func proposedGeneration(data []byte) int64 {
	var g struct {
		Generation int64 `json:"generation"`
	}
	_ = json.Unmarshal(data, &g)
	return g.Generation
}

// takeProposal reads the proposal of rulesFile, if any, and makes it the
// rules file once it is valid; a refused one is removed. Without a
// proposal (SIGHUP sent by hand, or by a runtime that rewrote the rules
// file itself), the rules file is read again.
func takeProposal(rulesFile string, accept func(*rules.Rules) error) (*rules.Rules, error) {
	path := ProposalFile(rulesFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return LoadRules(rulesFile)
	}
	if err != nil {
		return nil, err
	}
	next, err := decodeRules(path, data)
	if err == nil {
		err = accept(next)
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, refusal{proposedGeneration(data), err}
	}
	if err := jsonfile.WriteData(rulesFile, data, 0o600); err != nil {
		_ = os.Remove(path)
		return nil, refusal{next.Generation, err}
	}
	_ = os.Remove(path)
	return next, nil
}

// refusal is a proposal the worker did not load, with its generation.
type refusal struct {
	generation int64
	err        error
}

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }
