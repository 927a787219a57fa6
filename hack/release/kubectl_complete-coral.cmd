@echo off
rem kubectl (1.26+) runs kubectl_complete-coral from PATH to complete "kubectl coral ...".
kubectl-coral.exe __complete %*
