package kernel

// Kernel side: the nftables rules that force a network namespace's
// traffic through the filter. They live inside the container's namespace
// (the container holds neither CAP_NET_ADMIN nor CAP_NET_RAW under a
// policy, so it can neither change them nor go around them).

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// tableName is clawrun's nftables table in a container's namespace.
const tableName = "clawrun"

// loIndex is the loopback interface's index, 1 in every namespace.
const loIndex = 1

// Ports are where the filter listens inside the namespace.
type Ports struct {
	Proxy uint16 // transparent TCP proxy
	DNS   uint16 // policy resolver, UDP and TCP
}

// InstallRules replaces clawrun's table in the namespace of nsFD in one
// atomic batch:
//
//	nat output (before Docker's DNAT of 127.0.0.11): DNS to anywhere,
//	    loopback included, goes to the resolver; other loopback traffic
//	    stays local; every other TCP connection goes to the proxy.
//	filter output, policy drop: only loopback (where the redirected
//	    traffic now goes) and replies of inbound connections leave.
//	filter postrouting: nothing to a loopback address leaves but
//	    through lo.
//
// Everything else (other UDP and QUIC, ICMP, SCTP, IPv6 the same as IPv4)
// is dropped.
func InstallRules(nsFD int, ports Ports) error {
	conn, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
	// Add then delete then add: replaces an old table in the same batch
	// (after a filter restart) and works when there is none.
	conn.AddTable(table)
	conn.DelTable(table)
	conn.AddTable(table)

	nat := conn.AddChain(&nftables.Chain{
		Name: "output_nat", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(-150),
	})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		conn.AddRule(&nftables.Rule{Table: table, Chain: nat, Exprs: concat(
			l4proto(proto), dport(53), redirect(ports.DNS),
		)})
	}
	// Loopback destinations stay local. (Not "oif lo": with the default
	// route via lo that a fresh namespace needs, every packet has oif lo.)
	conn.AddRule(&nftables.Rule{Table: table, Chain: nat, Exprs: concat(daddrLoopback4(), accept())})
	conn.AddRule(&nftables.Rule{Table: table, Chain: nat, Exprs: concat(daddrLoopback6(), accept())})
	conn.AddRule(&nftables.Rule{Table: table, Chain: nat, Exprs: concat(
		l4proto(unix.IPPROTO_TCP), redirect(ports.Proxy),
	)})

	drop := nftables.ChainPolicyDrop
	filter := conn.AddChain(&nftables.Chain{
		Name: "output_filter", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &drop,
	})
	conn.AddRule(&nftables.Rule{Table: table, Chain: filter, Exprs: concat(oifLoopback(expr.CmpOpEq), accept())})
	// Traffic the nat chain redirected to the filter. "oif lo" alone does
	// not see it when the namespace has a real route (Docker's, a CNI's):
	// the output interface a chain sees is the one routed before the
	// redirect, for every chain of the hook. Other traffic to loopback
	// addresses is not accepted here: a socket bound to a real interface
	// (SO_BINDTODEVICE, IP_UNICAST_IF) sends it out of that interface.
	conn.AddRule(&nftables.Rule{Table: table, Chain: filter, Exprs: concat(daddrLoopback4(), ctRedirected(), accept())})
	conn.AddRule(&nftables.Rule{Table: table, Chain: filter, Exprs: concat(daddrLoopback6(), ctRedirected(), accept())})
	// Replies of connections that came in (a published port): the reply
	// direction of an established flow the container did not start.
	conn.AddRule(&nftables.Rule{Table: table, Chain: filter, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}}, // IP_CT_DIR_REPLY
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: le32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	// After routing: loopback destinations leave through lo only. The
	// redirect reroutes a packet, and a socket bound to a real interface
	// keeps it: its redirected traffic would go out there, to 127.0.0.1.
	post := conn.AddChain(&nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter,
	})
	for _, daddr := range [][]expr.Any{daddrLoopback4(), daddrLoopback6()} {
		conn.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: concat(
			oifLoopback(expr.CmpOpNeq), daddr, []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
		)})
	}
	// Nothing from outside may reach 127.0.0.0/8 (route_localnet is on so
	// that redirected traffic keeps its source; see EnsureRoutes).
	input := conn.AddChain(&nftables.Chain{
		Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
	})
	conn.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: concat(
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(loIndex)},
		},
		daddrLoopback4(),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
	)})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: install rules: %w", err)
	}
	return nil
}

// RemoveRules deletes clawrun's table from the namespace (if it is still
// there).
func RemoveRules(nsFD int) error {
	conn, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		return err
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
	conn.AddTable(table)
	conn.DelTable(table)
	return conn.Flush()
}

// RulesInstalled reports whether clawrun's table exists in the namespace.
func RulesInstalled(nsFD int) (bool, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		return false, err
	}
	t, err := conn.ListTableOfFamily(tableName, nftables.TableFamilyINet)
	if err != nil {
		return false, nil
	}
	return t != nil, nil
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// dport matches the destination port of TCP or UDP (same offset).
func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
	}
}

// oifLoopback matches packets routed to lo (op CmpOpEq) or elsewhere
// (CmpOpNeq).
func oifLoopback(op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: le32(loIndex)},
	}
}

// ctStatusDstNAT is IPS_DST_NAT (linux/netfilter/nf_conntrack_common.h):
// the flow's destination was rewritten, here by the nat chain's redirect.
const ctStatusDstNAT uint32 = 1 << 5

// ctRedirected matches a flow whose destination the nat chain rewrote.
func ctRedirected() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(ctStatusDstNAT), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(0)},
	}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// daddrLoopback4 matches ip daddr 127.0.0.0/8.
func daddrLoopback4() []expr.Any {
	return concat(nfproto(unix.NFPROTO_IPV4), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}},
	})
}

// daddrLoopback6 matches ip6 daddr ::1.
func daddrLoopback6() []expr.Any {
	return concat(nfproto(unix.NFPROTO_IPV6), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append(make([]byte, 15), 1)},
	})
}

func redirect(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: be16(port)},
		&expr.Redir{RegisterProtoMin: 1},
	}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func le32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
