package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// The node's label, set once the runtime is installed (RuntimeClasses
// schedule onto it) and removed first at uninstall.
const (
	nodeLabel      = "clawrun.dev/runtime"
	nodeLabelValue = "installed"
)

// labeler sets or removes (value nil) a label of the node.
type labeler interface {
	label(key string, value *string) error
}

// serviceAccountDir is where the kubelet mounts the pod's API credentials.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// apiNode labels a node through the API server, as the pod's service
// account (in-cluster: KUBERNETES_SERVICE_HOST and _PORT).
type apiNode struct {
	name   string
	server string
	token  string
	client *http.Client
}

func inClusterNode(name string) (*apiNode, error) {
	if name == "" {
		return nil, fmt.Errorf("NODE_NAME is not set (the DaemonSet sets it from spec.nodeName)")
	}
	hostEnv, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if hostEnv == "" || port == "" {
		return nil, fmt.Errorf("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not in a pod")
	}
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return nil, fmt.Errorf("the service account token: %w", err)
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("the cluster's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s/ca.crt: no certificate", serviceAccountDir)
	}
	return &apiNode{
		name:   name,
		server: "https://" + net.JoinHostPort(hostEnv, port),
		token:  string(bytes.TrimSpace(token)),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	}, nil
}

// label patches the node's labels (a JSON merge patch: null removes).
func (n *apiNode) label(key string, value *string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{key: value}}})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPatch, n.server+"/api/v1/nodes/"+url.PathEscape(n.name), bytes.NewReader(patch))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("labelling node %s: %w", n.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("labelling node %s: %s: %s", n.name, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
