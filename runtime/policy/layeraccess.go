package policy

// Allows reports whether the layer alone grants read (write false) or
// every file right (write true) at path: a rule on path or one of its
// parents.
func (l Layer) Allows(path string, write bool) bool {
	need := readOnly
	if write {
		need = readWrite
	}
	return levelAt(l, path, false) >= need
}

// Within reports whether path is dir or lies inside it.
func Within(path, dir string) bool { return under(path, dir) }
