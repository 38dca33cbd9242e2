package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"rdev.dev/rdev/internal/rdev"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

type envelope struct {
	Data  any        `json:"data,omitempty"`
	Error *errorBody `json:"error,omitempty"`
	Meta  meta       `json:"meta"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

type meta struct {
	RequestID string `json:"request_id"`
}

// errorTable maps every domain error to its status and code: the one place
// where that decision is made.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	{rdev.ErrProjectNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrKeyNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrBranchNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrRefNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrCheckoutNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrBranchProtected, http.StatusBadRequest, "BAD_REQUEST"},
	{rdev.ErrCheckoutNotActive, http.StatusBadRequest, "BAD_REQUEST"},
	{rdev.ErrCheckoutExists, http.StatusConflict, "CHECKOUT_EXISTS"},
	{rdev.ErrSessionExists, http.StatusConflict, "SESSION_EXISTS"},
	{rdev.ErrSessionNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrSessionNotActive, http.StatusBadRequest, "BAD_REQUEST"},
	{rdev.ErrPodNotRunning, http.StatusBadRequest, "BAD_REQUEST"},
	{rdev.ErrCommandNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrCommandNotRunning, http.StatusConflict, "COMMAND_NOT_RUNNING"},
	{rdev.ErrNoStdin, http.StatusConflict, "NO_STDIN"},
	{rdev.ErrStdinClosed, http.StatusConflict, "STDIN_CLOSED"},
	{rdev.ErrBranchExists, http.StatusConflict, "BRANCH_EXISTS"},
	{rdev.ErrProjectExists, http.StatusConflict, "PROJECT_EXISTS"},
	{rdev.ErrConflict, http.StatusConflict, "CONFLICT"},
	{rdev.ErrTaskNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrWorkerNotFound, http.StatusNotFound, "NOT_FOUND"},
	{rdev.ErrLeaseNotHeld, http.StatusConflict, "LEASE_NOT_HELD"},
	{rdev.ErrTaskFinished, http.StatusConflict, "TASK_FINISHED"},
	{rdev.ErrUnauthorized, http.StatusUnauthorized, "UNAUTHORIZED"},
	{rdev.ErrForbidden, http.StatusForbidden, "FORBIDDEN"},
	{rdev.ErrProjectNotAllowed, http.StatusForbidden, "FORBIDDEN"},
	{rdev.ErrNotYourWorker, http.StatusForbidden, "FORBIDDEN"},
	{rdev.ErrKeyBeyondCaller, http.StatusForbidden, "FORBIDDEN"},
	{rdev.ErrBuiltInWorker, http.StatusConflict, "CONFLICT"},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"},
	{errRouteNotFound, http.StatusNotFound, "NOT_FOUND"},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "TIMEOUT"},
}

var (
	errBodyTooLarge     = fmt.Errorf("request body exceeds %d bytes (1 MiB)", MaxBodyBytes)
	errRouteNotFound    = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed on this route")
)

// respond writes a success envelope.
func respond(w http.ResponseWriter, r *http.Request, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(envelope{Data: data, Meta: meta{RequestID: requestID(r.Context())}})
}

// respondError writes the error envelope for err. Errors the table does not
// know are logged with the request id and reported as internalMsg.
func (s *Server) respondError(w http.ResponseWriter, r *http.Request, err error, internalMsg string) {
	status, body := http.StatusInternalServerError, errorBody{Code: "INTERNAL_ERROR", Message: internalMsg}
	var inv *rdev.InvalidError
	var nosb *rdev.SandboxUnavailableError
	var forbidden *rdev.ForbiddenError
	if errors.As(err, &inv) {
		status, body = http.StatusBadRequest, errorBody{Code: "BAD_REQUEST", Message: inv.Message, Field: inv.Field}
	} else if errors.As(err, &forbidden) {
		status, body = http.StatusForbidden, errorBody{Code: "FORBIDDEN", Message: forbidden.Message, Field: forbidden.Field}
	} else if errors.As(err, &nosb) {
		status, body = http.StatusServiceUnavailable, errorBody{Code: "SANDBOX_UNAVAILABLE", Message: nosb.Error()}
	} else {
		found := false
		for _, e := range errorTable {
			if errors.Is(err, e.err) {
				status, body, found = e.status, errorBody{Code: e.code, Message: e.err.Error()}, true
				break
			}
		}
		if !found {
			s.log.ErrorContext(r.Context(), "request failed", "request_id", requestID(r.Context()),
				"method", r.Method, "path", r.URL.Path, "err", err)
		}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rdev"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(envelope{Error: &body, Meta: meta{RequestID: requestID(r.Context())}})
}

// decode reads one JSON object from the body into v, refusing unknown
// fields, trailing data and bodies over MaxBodyBytes. Its errors are
// *rdev.InvalidError or errBodyTooLarge, each naming the problem.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	return decodeJSON(body, v)
}

func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errBodyTooLarge
		}
		return rdev.Invalid("", "invalid request body: expected a single JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.Is(err, io.EOF):
		return rdev.Invalid("", "invalid request body: empty, a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return rdev.Invalid("", "invalid request body: malformed JSON (unexpected end)")
	case errors.As(err, &syn):
		return rdev.Invalid("", "invalid request body: malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		if typ.Field == "" {
			return rdev.Invalid("", "invalid request body: expected a JSON object, got %s", typ.Value)
		}
		return rdev.Invalid(typ.Field, "must be %s, got %s", jsonKind(typ.Type.String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return rdev.Invalid(name, "unknown field %q", name)
	}
	return rdev.Invalid("", "invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKind(goType string) string {
	switch {
	case goType == "string" || strings.HasSuffix(goType, "Scope"):
		return "a string"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "*int") || strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "bool" || goType == "*bool":
		return "a boolean"
	case strings.HasPrefix(goType, "[]") || strings.HasPrefix(goType, "*[]"):
		return "an array"
	case strings.HasPrefix(goType, "map") || strings.Contains(goType, "."):
		return "an object"
	}
	return "of type " + goType
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
