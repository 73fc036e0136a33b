"""The rasp_lab programs zoo (installed as `rasp_lab.programs`)."""
