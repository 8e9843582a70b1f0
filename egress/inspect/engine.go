package inspect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"time"
)

// Config configures an Engine: the per-container part of inspection.
type Config struct {
	// CA signs the leaves presented to the container's clients.
	CA *CA
	// RootCAs verify upstream servers: the host's trust store (nil: the
	// system pool) or the CAs of a configured file.
	RootCAs *x509.CertPool
	// MaxRPCBody bounds the body read for JSON-RPC inspection (0: 1 MiB).
	// A larger body on a request to inspect is refused. At most
	// rpcBodiesAtOnce bodies are held at a time, whatever the number of
	// connections and streams: the others wait their turn.
	MaxRPCBody int64
	// ErrorLog receives net/http's own complaints (nil: discarded); the
	// decisions go to Options.Log.
	ErrorLog *log.Logger
}

// DefaultMaxRPCBody is Config.MaxRPCBody's default: room for any MCP
// request a tool call makes, not for an upload.
const DefaultMaxRPCBody = 1 << 20

// Timeouts and limits of the client side.
const (
	// handshakeTimeout bounds the container's TLS handshake with the
	// engine (the filter's own handshake timeout).
	handshakeTimeout = 10 * time.Second
	// readHeaderTimeout bounds the arrival of an HTTP/1.1 request head.
	readHeaderTimeout = 30 * time.Second
	// idleTimeout closes a client connection without requests for this
	// long (HTTP/1.1 keep-alive, HTTP/2).
	idleTimeout = 5 * time.Minute
	// maxHeaderBytes bounds a request head, as the filter bounds plain
	// HTTP's.
	maxHeaderBytes = 64 << 10
	// maxConcurrentStreams bounds the HTTP/2 streams of one connection.
	maxConcurrentStreams = 100
	// rpcBodiesAtOnce bounds the JSON-RPC bodies held by an engine at a
	// time (16 MiB at the default MaxRPCBody): the filter's memory is
	// bounded, and a container must not exhaust it with many streams.
	rpcBodiesAtOnce = 16
	// upstreamSessionCacheSize bounds the upstream TLS sessions kept for
	// resumption, one per upstream name (least recently used out).
	upstreamSessionCacheSize = 1024
)

// Engine terminates the TLS of the container's connections that the policy
// inspects, decides every request and sends the allowed ones upstream over
// TLS it verifies. One Engine per container: it holds the container's CA,
// its leaves and the TLS state shared by its connections (server configs,
// upstream session tickets). Serve handles one connection; it is safe for
// concurrent use.
type Engine struct {
	ca         *CA
	roots      *x509.CertPool
	maxRPCBody int64
	rpcBodies  chan struct{} // a token per body being held for inspection
	errorLog   *log.Logger

	// serverTLS[0] offers h2 first, serverTLS[1] http/1.1 first: the
	// client's preference picks one (crypto/tls would follow the
	// server's order).
	serverTLS [2]*tls.Config
	// upstreamSessions resumes upstream TLS sessions across connections:
	// a resumed handshake skips the certificate chain (verified when the
	// session was made). crypto/tls keys a session by the config's
	// ServerName, the upstream's name, and before offering a session
	// checks its certificate against that name and its verified chains
	// against the roots and the clock again: a session is never offered
	// to prove another name, nor once its chain no longer verifies.
	upstreamSessions tls.ClientSessionCache
	handler          http.Handler // serveHTTP
	h1               *http.Server // shared by every HTTP/1.1 connection
	h2Base           *http.Server // limits and log of HTTP/2 connections
	buffers          bufferPool
	pools            upstreamPools // upstream connections shared by Options.Pool
}

// NewEngine makes the Engine of one container.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.CA == nil {
		return nil, errors.New("inspect: Config.CA is nil")
	}
	if cfg.MaxRPCBody < 0 {
		return nil, errors.New("inspect: Config.MaxRPCBody is negative")
	}
	e := &Engine{
		ca:               cfg.CA,
		roots:            cfg.RootCAs,
		maxRPCBody:       cfg.MaxRPCBody,
		rpcBodies:        make(chan struct{}, rpcBodiesAtOnce),
		errorLog:         cfg.ErrorLog,
		upstreamSessions: tls.NewLRUClientSessionCache(upstreamSessionCacheSize),
		buffers:          newBufferPool(),
	}
	if e.maxRPCBody == 0 {
		e.maxRPCBody = DefaultMaxRPCBody
	}
	if e.errorLog == nil {
		e.errorLog = log.New(io.Discard, "", 0)
	}
	e.serverTLS[0] = e.serverConfig(protoH2, protoHTTP1)
	e.serverTLS[1] = e.serverConfig(protoHTTP1, protoH2)
	e.handler = http.HandlerFunc(e.serveHTTP)
	e.h1 = e.newH1Server()
	e.h2Base = &http.Server{ErrorLog: e.errorLog, MaxHeaderBytes: maxHeaderBytes, IdleTimeout: idleTimeout}
	return e, nil
}

// ALPN protocol names.
const (
	protoH2    = "h2"
	protoHTTP1 = "http/1.1"
)

// serverConfig is the engine's TLS server side, offering protos in this
// order. The leaf is always that of the server name the filter matched
// (certificate).
func (e *Engine) serverConfig(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         protos,
		CurvePreferences:   clientLegCurves,
		GetCertificate:     e.certificate,
		GetConfigForClient: e.configForClient,
	}
}

// clientLegCurves are the key exchanges the engine accepts from the
// container's clients: the classical ones, without the post-quantum
// hybrids (X25519MLKEM768...) that crypto/tls would otherwise always
// pick. This leg never leaves the host (the container's network
// namespace to the filter), where recording it for a later quantum
// computer would take the host itself, and the filter's CA key with it;
// the hybrid's ML-KEM costs each new connection about a tenth of a
// millisecond of the filter's CPU and of the client's. The upstream leg,
// which crosses the network, keeps crypto/tls's defaults.
var clientLegCurves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// configForClient picks the server config whose ALPN order is the
// client's: h2 when the client lists it before http/1.1.
func (e *Engine) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	for _, p := range hello.SupportedProtos {
		switch p {
		case protoH2:
			return e.serverTLS[0], nil
		case protoHTTP1:
			return e.serverTLS[1], nil
		}
	}
	return e.serverTLS[1], nil
}

// errServerName: the ClientHello the engine read is not for the name the
// filter matched (it cannot be, as the filter replays the one it read;
// checked all the same).
var errServerName = errors.New("inspect: the ClientHello's server name is not the one matched")

// certificate returns the leaf of the server name the filter matched for
// this connection.
func (e *Engine) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, ok := hello.Conn.(*clientConn)
	if !ok || !equalFoldASCII(hello.ServerName, c.serverName) {
		return nil, errServerName
	}
	return e.ca.Leaf(c.serverName)
}

// upstreamConfig is the TLS client side towards serverName's upstream:
// verified with the engine's roots, offering h2 only when the client
// speaks it (an HTTP/1.1 client may upgrade to WebSocket, which needs
// HTTP/1.1 upstream too).
func (e *Engine) upstreamConfig(serverName string, h2 bool) *tls.Config {
	protos := []string{protoHTTP1}
	if h2 {
		protos = []string{protoH2, protoHTTP1}
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		RootCAs:            e.roots,
		NextProtos:         protos,
		ClientSessionCache: e.upstreamSessions,
	}
}

// bufferPool lends the 32 KiB buffers that copy response bodies
// (httputil.ReverseProxy would allocate one per request). A channel keeps
// them: a sync.Pool would allocate a box for each []byte it is given back.
type bufferPool struct{ free chan []byte }

// pooledBuffers bounds the buffers kept for reuse (2 MiB).
const pooledBuffers = 64

func newBufferPool() bufferPool { return bufferPool{free: make(chan []byte, pooledBuffers)} }

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.free:
		return buf
	default:
		return make([]byte, 32<<10)
	}
}

func (b *bufferPool) Put(buf []byte) {
	select {
	case b.free <- buf:
	default: // enough kept
	}
}
