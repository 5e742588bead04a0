// Package configdata reads and digests the content of ConfigMaps and
// Secrets, for operators whose work depends on configuration: an App whose
// pods must roll when the ConfigMap they read changes, a reloader that
// rolls workloads. Digests are written into pod templates and onto
// objects, so they are one-way and short, and never carry the data.
package configdata
