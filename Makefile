# rolekeeper — see README.md. Every tool is built from the Go module proxy into bin/.
SHELL := /usr/bin/env bash -o pipefail
GO ?= go
BIN := $(CURDIR)/bin

CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION  ?= v2.15.0
HELM_VERSION           ?= v4.3.1
KUBE_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16
ASSETS := $(BIN)/k8s/$(KUBE_VERSION)-etcd$(ETCD_VERSION)
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c
MINIO := $(BIN)/minio-$(MINIO_VERSION)/minio

CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM           := $(BIN)/helm-$(HELM_VERSION)

TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: all
all: build

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=rolekeeper-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac
	$(GO) run ./hack/apidocs > docs/api.md
	cp config/crd/bases/*.yaml charts/rolekeeper/crds/
	cp config/prometheus/rolekeeper.rules.yaml config/grafana/rolekeeper-dashboard.json charts/rolekeeper/files/

.PHONY: verify-gen
verify-gen: generate manifests ## Regenerate and fail when generated files differ from the committed ones.
	@if [ -n "$$(git status --porcelain -- api config docs/api.md charts)" ]; then \
		echo "generated files are out of date; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config docs/api.md charts; git --no-pager diff --stat -- api config docs/api.md charts; exit 1; fi

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet, including the e2e and real-node tests behind their build tags.
	$(GO) vet -tags e2e,node ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint with the explicit linter list in .golangci.yml.
	$(GOLANGCI_LINT) run ./...

.PHONY: control-plane
control-plane: $(ASSETS)/kube-apiserver ## Build kube-apiserver and etcd for envtest from their Go modules.

$(ASSETS)/kube-apiserver:
	KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) ASSETS_DIR=$(ASSETS) hack/build-control-plane.sh

$(MINIO):
	MINIO_VERSION=$(MINIO_VERSION) hack/build-minio.sh

.PHONY: minio
minio: $(MINIO) ## Build MinIO, the independent STS AssumeRole peer, from its Go module.

.PHONY: test
test: control-plane minio ## Unit and integration (envtest) tests, including the STS conformance tests.
	KUBEBUILDER_ASSETS=$(ASSETS) MINIO_BIN=$(MINIO) $(GO) test $(TEST_FLAGS) ./...

$(ASSETS)/kubectl:
	WITH_KUBECTL=1 KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) ASSETS_DIR=$(ASSETS) hack/build-control-plane.sh

.PHONY: test-e2e
test-e2e: control-plane $(ASSETS)/kubectl minio $(HELM) ## End-to-end tests: the built binary, config/crd and config/rbac against a real control plane, MinIO and the emulator.
	KUBEBUILDER_ASSETS=$(ASSETS) MINIO_BIN=$(MINIO) HELM_BIN=$(HELM) $(GO) test -tags e2e -count=1 -timeout 30m -v ./test/e2e/ $(if $(RUN),-run '$(RUN)')

$(ASSETS)/kubelet:
	WITH_NODE=1 KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) ASSETS_DIR=$(ASSETS) hack/build-control-plane.sh

.PHONY: node
node: $(ASSETS)/kubelet ## Build kubelet, kube-controller-manager, kube-scheduler and kube-proxy for the real-node suite.

.PHONY: test-node
test-node: control-plane $(ASSETS)/kubectl $(ASSETS)/kubelet minio $(HELM) ## Real-node tests (root): the image, Helm and kustomize installs, pods consuming the Secret (docs/e2e.md); RUN=TestName for one.
	KUBEBUILDER_ASSETS=$(ASSETS) MINIO_BIN=$(MINIO) HELM_BIN=$(HELM) test/node/run.sh $(GO) test -tags node -count=1 -timeout 30m -v ./test/node/ $(if $(RUN),-run '$(RUN)')

SCALE ?= 100,1000,10000

.PHONY: bench
bench: control-plane $(ASSETS)/kubectl minio ## Scale harness at N=$(SCALE) and Go benchmarks; writes docs/benchmarks.md.
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/... | tee $(BIN)/bench-go.txt
	ROLEKEEPER_SCALE=$(SCALE) ROLEKEEPER_SCALE_REPORT=$(BIN)/bench-scale.md KUBEBUILDER_ASSETS=$(ASSETS) \
		$(GO) test -tags e2e -count=1 -timeout 90m -v -run '^TestScale$$' ./test/e2e/ | tee $(BIN)/bench-scale.txt
	hack/bench-report.sh $(BIN)/bench-scale.md $(BIN)/bench-go.txt > docs/benchmarks.md

.PHONY: bench-guard
bench-guard: control-plane $(ASSETS)/kubectl minio ## Scale regression guard at N=500: fails on STS calls != N, > 2 writes per issuance, > 2% of N renewals in one second, calls/writes on restart, or private memory per AssumedRole over its bound.
	ROLEKEEPER_SCALE=500 ROLEKEEPER_SCALE_GUARD=1 KUBEBUILDER_ASSETS=$(ASSETS) \
		$(GO) test -tags e2e -count=1 -timeout 15m -v -run '^TestScale$$' ./test/e2e/

##@ Build and run

.PHONY: build
build: ## Build the manager binary into bin/rolekeeper.
	$(GO) build -o $(BIN)/rolekeeper .

.PHONY: demo
demo: control-plane ## Run rolekeeper locally: control plane, STS emulator, operator and config/samples; shows rotations (ARGS="-duration 2m").
	$(GO) run ./hack/demo $(ARGS)

.PHONY: run
run: ## Run the manager against the current kubeconfig with the default AWS credential chain.
	$(GO) run . --leader-elect=false $(ARGS)

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REPO ?= ghcr.io/rolekeeper/rolekeeper
IMAGE_DIR  ?= $(BIN)/image

.PHONY: image
image: ## Build the image without Docker: $(IMAGE_DIR)/rolekeeper.tar (docker-save) and $(IMAGE_DIR)/oci (OCI layout), tagged $(IMAGE_REPO):$(VERSION); same commit, same digest.
	@mkdir -p $(IMAGE_DIR)
	CGO_ENABLED=1 GOOS=linux $(GO) build -trimpath -tags netgo,osusergo -ldflags='-s -linkmode external -extldflags "-static"' -o $(IMAGE_DIR)/rolekeeper .
	$(GO) run ./hack/image -binary $(IMAGE_DIR)/rolekeeper -tag $(IMAGE_REPO):$(VERSION) -o $(IMAGE_DIR)/rolekeeper.tar -oci-layout $(IMAGE_DIR)/oci \
		-version $(VERSION) -revision $$(git rev-parse HEAD) -created $${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)} | tee $(IMAGE_DIR)/rolekeeper.digest

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/controller-gen $@

$(HELM):
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/helm $@

.PHONY: helm
helm: $(HELM) ## Build Helm from its Go module (for rendering charts/rolekeeper).

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

##@ SDK clients for the credentials sidecar's tests

SDK_JS_VERSION ?= 3.967.0
SDK_JS := $(BIN)/sdk-js-$(SDK_JS_VERSION)

$(SDK_JS)/node_modules/@aws-sdk/client-sts/package.json: hack/sdk-js/package.json hack/sdk-js/package-lock.json
	mkdir -p $(SDK_JS)
	cp hack/sdk-js/package.json hack/sdk-js/package-lock.json $(SDK_JS)/
	cd $(SDK_JS) && npm ci --ignore-scripts --no-audit --no-fund

.PHONY: sdk-js
sdk-js: $(SDK_JS)/node_modules/@aws-sdk/client-sts/package.json ## Install the AWS SDK for JavaScript v3 (hack/sdk-js, locked) into bin/ with npm.
