// Package olla is the Olla LLM load balancer as a Caddy module.
package olla
