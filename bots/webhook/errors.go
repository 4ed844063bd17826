package webhook

import "errors"

var (
	// ErrConfig reports invalid options.
	ErrConfig = errors.New("webhook: invalid options")
	// ErrRedirect is the error of a delivery answered with a redirect:
	// redirects are never followed, so that an endpoint cannot point the
	// node at an address the URL policy would refuse.
	ErrRedirect = errors.New("webhook: endpoint answered with a redirect, which is not followed")
)
