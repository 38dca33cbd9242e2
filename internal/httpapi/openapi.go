package httpapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI parses and validates the embedded OpenAPI document.
func OpenAPI() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return doc, nil
}

// openapiJSON is the document as JSON, made on first use (not at start-up:
// the same binary runs short CLI commands such as git-credential).
var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	doc, err := OpenAPI()
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
})

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	b, err := openapiJSON()
	if err != nil {
		s.respondError(w, r, err, "Failed to render the OpenAPI document")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
