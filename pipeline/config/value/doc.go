// Package value holds the value types of mailtel's configuration file that
// the config package and every component's own configuration share:
// durations and sizes as a file writes them, basic-auth credentials, and
// URLs that may carry secrets (ParseURL and RedactURL, whose output and
// errors never show a password or a query value). It imports nothing of
// mailtel's, so a sink package can use it without the config package.
package value
