"""End-to-end tests against a real Linux hypervisor host (a qemu guest). A
package, so that its conftest does not shadow tests/conftest.py."""
